/* coalesce: what one send instead of two is worth per job on this machine, on loopback TCP.
 *
 *   gcc -O2 coalesce.c -o coalesce && ./coalesce N split|coalesced
 *
 * Mimics the W4 drain ping-pong without gearmand or libgearman. A "worker" process receives a
 * JOB_ASSIGN-sized packet (100 bytes), then answers with WORK_COMPLETE (86 bytes: 12-byte header,
 * handle, NUL, 64-byte result) and GRAB_JOB (12 bytes) -- as two send()s the way libgearman 1.1.20
 * does ("split"), or as one send() of 98 bytes ("coalesced"). A "server" process (gearmand's side)
 * waits in epoll_wait, reads with recv() until EAGAIN as gearmand does, and sends the next
 * JOB_ASSIGN once the 98 bytes of a job are in. Both set TCP_NODELAY, as libgearman and gearmand do.
 *
 * Prints one JSON line: CPU µs per job of each process (getrusage over the loop) and syscalls per
 * job of each, and jobs/s. See benchmarks/README.md, "Going below raw C". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ASSIGN 100
#define COMPLETE 86
#define GRAB 12

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void die(const char *what) { perror(what); exit(2); }

/* The server side; writes "cpu syscalls" to the pipe wfd when done. */
static void server(int lfd, long n, int wfd) {
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) die("accept");
  nodelay(fd);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  char buf[4096], assign[ASSIGN];
  memset(assign, 'a', sizeof assign);
  long calls = 0, jobs = 0, have = 0;
  double c0 = cpu_s();
  if (send(fd, assign, ASSIGN, 0) != ASSIGN) die("send");
  calls++;
  while (jobs < n) {
    struct epoll_event out;
    calls++;
    if (epoll_wait(ep, &out, 1, -1) < 1) continue;
    for (;;) {
      calls++;
      ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) { have += r; continue; }
      if (r == 0) goto done;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      die("recv");
    }
    while (have >= COMPLETE + GRAB && jobs < n) {
      have -= COMPLETE + GRAB;
      jobs++;
      if (jobs < n) {
        calls++;
        if (send(fd, assign, ASSIGN, 0) != ASSIGN) die("send");
      }
    }
  }
done:;
  double c = cpu_s() - c0;
  char msg[128];
  int len = snprintf(msg, sizeof msg, "%.9f %ld\n", c, calls);
  if (write(wfd, msg, (size_t)len) != len) die("write");
  close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: coalesce N split|coalesced\n"); return 2; }
  long n = atol(argv[1]);
  int coalesced = !strcmp(argv[2], "coalesced");
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr *)&a, &alen))
    die("listen");
  int p[2];
  if (pipe(p)) die("pipe");
  pid_t pid = fork();
  if (pid == 0) { close(p[0]); server(lfd, n, p[1]); _exit(0); }
  close(p[1]);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
  nodelay(fd);
  char in[ASSIGN], out[COMPLETE + GRAB];
  memset(out, 'r', sizeof out);
  long calls = 0;
  double t0 = now_s(), c0 = cpu_s();
  for (long j = 0; j < n; j++) {
    size_t got = 0;
    while (got < ASSIGN) {  /* libgearman polls, then reads; a blocking recv stands for both */
      calls++;
      ssize_t r = recv(fd, in + got, ASSIGN - got, 0);
      if (r <= 0) die("recv");
      got += (size_t)r;
    }
    if (coalesced) {
      calls++;
      if (send(fd, out, COMPLETE + GRAB, 0) != COMPLETE + GRAB) die("send");
    } else {
      calls += 2;
      if (send(fd, out, COMPLETE, 0) != COMPLETE) die("send");
      if (send(fd, out + COMPLETE, GRAB, 0) != GRAB) die("send");
    }
  }
  double c = cpu_s() - c0, el = now_s() - t0;
  char line[128] = "";
  ssize_t r = read(p[0], line, sizeof line - 1);
  if (r > 0) line[r] = 0;
  double scpu = 0;
  long scalls = 0;
  sscanf(line, "%lf %ld", &scpu, &scalls);
  close(fd);
  waitpid(pid, NULL, 0);
  printf("{\"mode\": \"%s\", \"n\": %ld, \"jobs_per_s\": %.0f, \"worker_cpu_us\": %.3f, "
         "\"worker_syscalls\": %.3f, \"server_cpu_us\": %.3f, \"server_syscalls\": %.3f}\n",
         argv[2], n, n / el, c / n * 1e6, (double)calls / n, scpu / n * 1e6, (double)scalls / n);
  return 0;
}
