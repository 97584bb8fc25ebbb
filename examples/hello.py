# A first program for a sandbox. Run it with:
#
#   go run ./cmd/compute run examples/hello.py
#
# Inside a local sandbox, the host name is the sandbox's own, the uid is
# the sandbox's (an unprivileged uid on the host), the working directory is
# its private work dir and the pid is small: it has its own pid namespace.
import os
import platform

print(f"Hello from {platform.node()} as uid {os.getuid()}")
print(f"Python {platform.python_version()} in {os.getcwd()}, pid {os.getpid()}")
