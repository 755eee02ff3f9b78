/* slowworker: many Gearman workers in one process, for benchmarks/slow_jobs.py.
 *
 * Built by benchmarks/slow_jobs.py at run time:  gcc -O2 slowworker.c -o slowworker -lgearman -lpthread
 *
 *   slowworker HOST PORT FUNCTION THREADS SLEEP_MS
 *
 * Starts THREADS threads, each with its own gearman_worker_st (its own connection), serving
 * FUNCTION: sleep SLEEP_MS milliseconds, then complete with the workload (echo). Runs until it is
 * killed. Prints "READY <threads>" once every thread is started (registration with gearmand
 * happens on each thread's first gearman_worker_work; the harness checks the admin status). */
#include <libgearman-1.0/gearman.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *g_host, *g_fn;
static in_port_t g_port;
static long g_sleep_ms;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static gearman_return_t slow_echo(gearman_job_st *job, void *ctx) {
  (void)ctx;
  sleep_ms(g_sleep_ms);
  if (gearman_failed(gearman_job_send_complete(job, gearman_job_workload(job), gearman_job_workload_size(job))))
    return GEARMAN_FAIL;
  return GEARMAN_SUCCESS;
}

static void *run(void *arg) {
  (void)arg;
  gearman_worker_st *w = gearman_worker_create(NULL);
  if (!w) { fprintf(stderr, "gearman_worker_create failed\n"); exit(2); }
  if (gearman_failed(gearman_worker_add_server(w, g_host, g_port))) {
    fprintf(stderr, "add_server: %s\n", gearman_worker_error(w)); exit(2);
  }
  gearman_function_t f = gearman_function_create(slow_echo);
  if (gearman_failed(gearman_worker_define_function(w, g_fn, strlen(g_fn), f, 0, NULL))) {
    fprintf(stderr, "define_function: %s\n", gearman_worker_error(w)); exit(2);
  }
  int errors = 0;
  for (;;) {
    gearman_return_t rc = gearman_worker_work(w);
    if (rc == GEARMAN_SUCCESS || rc == GEARMAN_WORK_FAIL) { errors = 0; continue; }
    if (++errors > 50) { fprintf(stderr, "worker_work: %s\n", gearman_worker_error(w)); break; }
    sleep_ms(100); /* server gone: back off instead of spinning */
  }
  gearman_worker_free(w);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: slowworker HOST PORT FUNCTION THREADS SLEEP_MS\n");
    return 2;
  }
  g_host = argv[1];
  g_port = (in_port_t)atoi(argv[2]);
  g_fn = argv[3];
  long threads = atol(argv[4]);
  g_sleep_ms = atol(argv[5]);
  if (threads <= 0 || g_sleep_ms < 0) { fprintf(stderr, "bad THREADS or SLEEP_MS\n"); return 2; }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (long i = 0; i < threads; i++) {
    pthread_t t;
    int err = pthread_create(&t, &attr, run, NULL);
    if (err) { fprintf(stderr, "pthread_create %ld: %s\n", i, strerror(err)); return 2; }
  }
  printf("READY %ld\n", threads);
  fflush(stdout);
  for (;;) pause();
  return 0;
}
