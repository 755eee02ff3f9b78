/* gmbench: the raw-C baseline of the pygearman benchmarks, straight on libgearman.
 *
 * Built by benchmarks/run.py at run time:  gcc -O2 gmbench.c -o gmbench -lgearman
 *
 *   gmbench client MODE HOST PORT FUNCTION N SIZE [BATCH]
 *     bg_loop        N x gearman_client_do_background (libgearman makes the unique)
 *     bg_loop_uniq   the same with our own uniques
 *     bg_batch       add_task_background x BATCH + run_tasks + task_free_all, repeated
 *     bg_batch_uniq  the same with our own uniques
 *     rt             N x gearman_client_do (sequential round trips; latency percentiles)
 *     taskset        add_task x BATCH + run_tasks + task_free_all, repeated, results counted
 *     taskset_uniq   the same with our own uniques
 *     many, many_uniq, aio, threads   n/a here (exit 3): Python-only APIs (submit_many, asyncio, a thread pool)
 *   gmbench worker MODE HOST PORT FUNCTION N
 *     echo           v2 echo function, forever (the harness kills it)
 *     drain          v2 echo function, exits after N jobs (times itself)
 *   gmbench version
 *
 * Prints one JSON line on stdout: {"n":..,"ok":..,"elapsed":s,"cpu":s,...}; exit 0 when ok == n,
 * 3 with {"na": reason} for a mode this library has no API for.
 * The timed region starts after setup (client created, server added, options set). With
 * GMBENCH_STOP_BEFORE_TIMED=1 the program stops itself (SIGSTOP) just before it, so run.py can
 * attach strace for its syscall pass and continue it with SIGCONT. */
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void stop_before_timed(void) {
  const char *e = getenv("GMBENCH_STOP_BEFORE_TIMED");
  if (e && !strcmp(e, "1")) raise(SIGSTOP);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double percentile(const double *sorted, long n, double p) {
  if (n <= 0) return 0;
  long i = (long)(p / 100.0 * (n - 1) + 0.5);
  if (i >= n) i = n - 1;
  return sorted[i];
}

static char *make_payload(size_t size) {
  char *p = malloc(size ? size : 1);
  if (!p) { perror("malloc"); exit(2); }
  for (size_t i = 0; i < size; i++) p[i] = (char)('a' + i % 26);
  return p;
}

static void emit(long n, long ok, double elapsed, double cpu, const char *api, const char *extra) {
  printf("{\"n\": %ld, \"ok\": %ld, \"elapsed\": %.6f, \"cpu\": %.6f, \"api\": \"%s\"%s%s}\n",
         n, ok, elapsed, cpu, api, extra && *extra ? ", " : "", extra ? extra : "");
  fflush(stdout);
}

/* ---- client ------------------------------------------------------------------------------- */

static long g_ok, g_bad;
static size_t g_size;

static gearman_return_t on_complete(gearman_task_st *task) {
  if (gearman_task_data_size(task) == g_size) g_ok++; else g_bad++;
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task) {
  (void)task;
  g_bad++;
  return GEARMAN_SUCCESS;
}

static int client_main(const char *mode, const char *host, int port, const char *fn, long n,
                       size_t size, long batch) {
  if (!strcmp(mode, "many") || !strcmp(mode, "many_uniq")) {
    printf("{\"na\": \"no call beyond add_task+run_tasks (that is W3-tasks)\"}\n");
    return 3;
  }
  if (!strcmp(mode, "aio") || !strcmp(mode, "threads")) {
    printf("{\"na\": \"a Python client mode (asyncio / thread pool)\"}\n");
    return 3;
  }
  gearman_client_st *c = gearman_client_create(NULL);
  if (!c) { fprintf(stderr, "gearman_client_create failed\n"); return 2; }
  if (gearman_failed(gearman_client_add_server(c, host, (in_port_t)port))) {
    fprintf(stderr, "add_server: %s\n", gearman_client_error(c)); return 2;
  }
  /* Without it libgearman 1.1.20 hangs on WORK_EXCEPTION (docs/libgearman-1.1.20.md#exception-hang); must follow add_server. */
  if (!gearman_client_set_server_option(c, "exceptions", 10)) {
    fprintf(stderr, "set_server_option(exceptions): %s\n", gearman_client_error(c)); return 2;
  }
  char *payload = make_payload(size);
  char uniq[64];
  int own_uniq = strstr(mode, "_uniq") != NULL;
  pid_t pid = getpid();
  long ok = 0;
  gearman_return_t rc;
  char extra[256] = "";
  const char *api = mode;
  if (batch <= 0) batch = 1000;
  g_size = size;

  stop_before_timed();
  double t0 = now_s(), c0 = cpu_s();
  if (!strcmp(mode, "bg_loop") || !strcmp(mode, "bg_loop_uniq")) {
    api = own_uniq ? "gearman_client_do_background(unique)" : "gearman_client_do_background";
    gearman_job_handle_t handle;
    for (long i = 0; i < n; i++) {
      if (own_uniq) snprintf(uniq, sizeof uniq, "%d-%ld", (int)pid, i);
      rc = gearman_client_do_background(c, fn, own_uniq ? uniq : NULL, payload, size, handle);
      if (rc != GEARMAN_SUCCESS) { fprintf(stderr, "do_background: %s\n", gearman_client_error(c)); break; }
      ok++;
    }
  } else if (!strcmp(mode, "bg_batch") || !strcmp(mode, "bg_batch_uniq")) {
    api = own_uniq ? "add_task_background(unique)+run_tasks, batches" : "add_task_background+run_tasks, batches";
    for (long done = 0, failed = 0; done < n && !failed; done += batch) {
      long m = n - done < batch ? n - done : batch;
      for (long i = 0; i < m && !failed; i++) {
        if (own_uniq) snprintf(uniq, sizeof uniq, "%d-%ld", (int)pid, done + i);
        if (!gearman_client_add_task_background(c, NULL, NULL, fn, own_uniq ? uniq : NULL, payload, size, &rc)) {
          fprintf(stderr, "add_task_background: %s\n", gearman_strerror(rc)); failed = 1;
        }
      }
      if (failed) break;
      rc = gearman_client_run_tasks(c);
      if (rc != GEARMAN_SUCCESS) { fprintf(stderr, "run_tasks: %s\n", gearman_client_error(c)); break; }
      ok += m;
      gearman_client_task_free_all(c);
    }
  } else if (!strcmp(mode, "rt")) {
    api = "gearman_client_do";
    double *lat = malloc(sizeof(double) * (n > 0 ? n : 1));
    for (long i = 0; i < n; i++) {
      size_t rsize = 0;
      double a = now_s();
      void *res = gearman_client_do(c, fn, NULL, payload, size, &rsize, &rc);
      lat[i] = now_s() - a;
      if (rc != GEARMAN_SUCCESS) { fprintf(stderr, "client_do: %s\n", gearman_client_error(c)); free(res); break; }
      if (rsize == size && (size == 0 || (res && !memcmp(res, payload, size)))) ok++;
      free(res);
    }
    qsort(lat, (size_t)ok, sizeof(double), cmp_double);
    snprintf(extra, sizeof extra, "\"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f",
             percentile(lat, ok, 50) * 1e6, percentile(lat, ok, 99) * 1e6);
    free(lat);
  } else if (!strcmp(mode, "taskset") || !strcmp(mode, "taskset_uniq")) {
    api = own_uniq ? "add_task(unique)+run_tasks, batches" : "add_task+run_tasks, batches";
    gearman_client_set_complete_fn(c, on_complete);
    gearman_client_set_fail_fn(c, on_fail);
    gearman_client_set_exception_fn(c, on_fail);
    for (long done = 0, failed = 0; done < n && !failed; done += batch) {
      long m = n - done < batch ? n - done : batch;
      for (long i = 0; i < m && !failed; i++) {
        if (own_uniq) snprintf(uniq, sizeof uniq, "%d-%ld", (int)pid, done + i);
        if (!gearman_client_add_task(c, NULL, NULL, fn, own_uniq ? uniq : NULL, payload, size, &rc)) {
          fprintf(stderr, "add_task: %s\n", gearman_strerror(rc)); failed = 1;
        }
      }
      if (failed) break;
      rc = gearman_client_run_tasks(c);
      if (rc != GEARMAN_SUCCESS) { fprintf(stderr, "run_tasks: %s\n", gearman_client_error(c)); break; }
      gearman_client_task_free_all(c);
    }
    ok = g_ok;
    if (g_bad) fprintf(stderr, "%ld tasks failed or returned a wrong size\n", g_bad);
  } else {
    fprintf(stderr, "unknown client mode %s\n", mode); return 2;
  }
  double elapsed = now_s() - t0, cpu = cpu_s() - c0;
  emit(n, ok, elapsed, cpu, api, extra);
  free(payload);
  gearman_client_free(c);
  return ok == n ? 0 : 1;
}

/* ---- worker ------------------------------------------------------------------------------- */

static long g_jobs;

static gearman_return_t echo_fn(gearman_job_st *job, void *ctx) {
  (void)ctx;
  if (gearman_failed(gearman_job_send_complete(job, gearman_job_workload(job), gearman_job_workload_size(job))))
    return GEARMAN_FAIL;
  g_jobs++;
  return GEARMAN_SUCCESS;
}

static int worker_main(const char *mode, const char *host, int port, const char *fn, long n) {
  int drain = !strcmp(mode, "drain");
  if (!drain && strcmp(mode, "echo")) { fprintf(stderr, "unknown worker mode %s\n", mode); return 2; }
  gearman_worker_st *w = gearman_worker_create(NULL);
  if (!w) { fprintf(stderr, "gearman_worker_create failed\n"); return 2; }
  if (gearman_failed(gearman_worker_add_server(w, host, (in_port_t)port))) {
    fprintf(stderr, "add_server: %s\n", gearman_worker_error(w)); return 2;
  }
  gearman_function_t f = gearman_function_create(echo_fn);
  if (gearman_failed(gearman_worker_define_function(w, fn, strlen(fn), f, 0, NULL))) {
    fprintf(stderr, "define_function: %s\n", gearman_worker_error(w)); return 2;
  }
  stop_before_timed();
  double t0 = now_s(), c0 = cpu_s();
  int errors = 0;
  while (!drain || g_jobs < n) {
    gearman_return_t rc = gearman_worker_work(w);
    if (rc == GEARMAN_SUCCESS || rc == GEARMAN_WORK_FAIL) { errors = 0; continue; }
    fprintf(stderr, "worker_work: %s\n", gearman_worker_error(w));
    if (++errors > 50) break;
    usleep(100000); /* server gone: back off instead of spinning (docs/libgearman-1.1.20.md#worker-connect-spin) */
  }
  double elapsed = now_s() - t0, cpu = cpu_s() - c0;
  emit(n, g_jobs, elapsed, cpu, "gearman_worker_define_function(v2)+worker_work", "");
  gearman_worker_free(w);
  return g_jobs >= n ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "version")) {
    printf("{\"libgearman\": \"%s\"}\n", gearman_version());
    return 0;
  }
  if (argc < 8 && !(argc == 7 && !strcmp(argv[1], "worker"))) {
    fprintf(stderr, "usage: gmbench client MODE HOST PORT FUNCTION N SIZE [BATCH]\n"
                    "       gmbench worker MODE HOST PORT FUNCTION N\n"
                    "       gmbench version\n");
    return 2;
  }
  const char *role = argv[1], *mode = argv[2], *host = argv[3], *fn = argv[5];
  int port = atoi(argv[4]);
  long n = atol(argv[6]);
  if (!strcmp(role, "client"))
    return client_main(mode, host, port, fn, n, (size_t)atol(argv[7]), argc > 8 ? atol(argv[8]) : 1000);
  if (!strcmp(role, "worker"))
    return worker_main(mode, host, port, fn, n);
  fprintf(stderr, "unknown role %s\n", role);
  return 2;
}
