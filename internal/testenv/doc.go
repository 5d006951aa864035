// Package testenv runs the real parts the integration tests need: an Apache
// Kafka cluster started by scripts/kafka.sh, the kseal binary as a
// subprocess, and three independent Kafka clients (franz-go, librdkafka's
// kcat and the Java console tools from the broker's own jars).
//
// It is test-only: nothing outside *_test.go files and test/integration may
// import it. Everything it starts it also stops, by process id, even when a
// test fails, panics or the test binary is killed: clusters have a watcher
// process that stops them once the test process is gone, and child
// processes get SIGKILL from the kernel when their parent dies.
package testenv
