module github.com/computesdk-go/compute

go 1.26
