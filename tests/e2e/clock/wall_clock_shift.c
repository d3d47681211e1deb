// An LD_PRELOAD library that moves the wall clock of the process that loads
// it (and of its children) by an offset a test can change while the process
// runs, as NTP stepping the system clock would: CLOCK_REALTIME,
// gettimeofday() and time() move; CLOCK_MONOTONIC and CLOCK_BOOTTIME do not.
//
// The offset is read on every call from the file named by
// FERRYDB_WALL_CLOCK_FILE, mapped into memory: two little-endian int64
// copies of the offset in milliseconds. The writer replaces all 16 bytes in
// one pwrite; a reader that sees the two copies differ caught the write
// half-done and reads again. Without the variable, or if the file cannot be
// mapped, the clock is left alone.
//
// Why not Debian's libfaketime: it slowed Chromium's renderers about 50-fold
// here (10 page-to-SharedWorker round trips: 24 s instead of 0.3 s), which
// turns every test wait into a timing question.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static volatile int64_t *shared_offset; /* NULL: not mapped (yet) */
static int mapping_tried;

static int64_t offset_ms(void) {
  if (!mapping_tried) {
    mapping_tried = 1;
    const char *path = getenv("FERRYDB_WALL_CLOCK_FILE");
    if (path) {
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        void *map = mmap(NULL, 16, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (map != MAP_FAILED) shared_offset = map;
      }
    }
  }
  if (!shared_offset) return 0;
  for (;;) {
    int64_t a = shared_offset[0];
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    int64_t b = shared_offset[1];
    if (a == b) return a;
  }
}

static void shift(struct timespec *ts) {
  int64_t ms = offset_ms();
  if (ms == 0) return;
  int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;
  ts->tv_sec += ms / 1000 + ns / 1000000000 - (ns < 0 ? 1 : 0);
  ns %= 1000000000;
  ts->tv_nsec = ns < 0 ? ns + 1000000000 : ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  static clock_gettime_fn real;
  if (!real) real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
  int result = real(id, ts);
  if (result == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
  return result;
}

int gettimeofday(struct timeval *tv, void *tz) {
  static gettimeofday_fn real;
  if (!real) real = (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday");
  int result = real(tv, tz);
  if (result == 0) {
    struct timespec ts = {tv->tv_sec, tv->tv_usec * 1000};
    shift(&ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return result;
}

time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
