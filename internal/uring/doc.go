// Package uring owns the project's raw io_uring (io_uring_setup(2),
// io_uring_enter(2), io_uring_register(2)) for Linux: one ring per caller,
// filling submission entries (recv, multishot recv from a provided-buffer
// ring, send, poll, cancel), waiting for completions with a timeout and
// reaping them, and provided-buffer rings (IORING_REGISTER_PBUF_RING). It
// is the part of liburing that the host port's io_uring driver
// (protocol/hostcmd) and the load tool's io_uring client driver
// (tools/bench) need. None of the Go io_uring libraries could be had (see
// docs/performance.md, "io_uring driver"). Layouts and constants are those
// of <linux/io_uring.h>. On other systems Available reports an error.
package uring
