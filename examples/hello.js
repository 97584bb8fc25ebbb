// A first program for a sandbox. Run it with:
//
//   go run ./cmd/compute run examples/hello.js
//
// Inside a local sandbox, the host name is the sandbox's own, the uid is
// the sandbox's (an unprivileged uid on the host), the working directory is
// its private work dir and the pid is small: it has its own pid namespace.
const os = require("os");

console.log(`Hello from ${os.hostname()} as uid ${process.getuid()}`);
console.log(`Node.js ${process.version} in ${process.cwd()}, pid ${process.pid}`);
