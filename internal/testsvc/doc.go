// Package testsvc starts real, throwaway PostgreSQL and Redis servers for tests and
// demo programs, and hands each test its own database or Redis logical DB.
//
// By default it runs the local binaries (PostgreSQL 15's initdb/postgres, Redis 7's
// redis-server) from a temporary directory named spine-testsvc-*, on loopback ports
// only; with no local binaries it falls back to containers, but only when a Docker
// daemon answers. SPINE_TEST_DATABASE_URL and SPINE_TEST_REDIS_URL point it at
// existing servers instead. Under CI=true a service that cannot be started fails the
// test; elsewhere the test is skipped. SPINE_TESTSVC_TMPDIR moves the servers'
// directories off os.TempDir, for example onto /dev/shm where creating a database's
// files on disk is slow.
//
// Servers die with the process that started them (Linux parent-death signal), and
// any temporary directory whose owner is gone is swept, with its server stopped, the
// next time a server starts.
//
// This package is test infrastructure: it must never be imported by production code
// paths, never listen on anything but loopback, and never touch a server it was not
// explicitly given. Servers run with fsync=off: their data is disposable.
package testsvc
