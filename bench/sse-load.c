/*
 * sse-load: one load-client process holding thousands of Server-Sent Events streams with epoll.
 *
 * Why C: the server under test and this client share a 2-core machine; a client that spends
 * a core on parsing would cap the numbers it reports. This one parses HTTP/1.1 (chunked or
 * not) and text/event-stream byte by byte (CR, LF and CRLF line ends, multi-line events),
 * and reads from each event's data the markers the publisher put into the payload:
 * "#S<seq>" (per-room sequence number) and "#T<microseconds since the epoch>" (publish time).
 *
 * Control: commands on stdin, one per line; JSON lines on stdout.
 *   stdout {"type":"connected",...}  once every connection attempt succeeded or gave up
 *   stdout {"type":"progress",...}   every 50 ms after that (per-room lowest last seq)
 *   stdin  "mark"  -> stdout {"type":"mark",...} cumulative counters + latency histogram since
 *                     the previous mark (the histogram is then cleared)
 *   stdin  "quit" or EOF -> exit. The process also exits by itself at --deadline-s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define LINE_CAP 1024
#define HIST_FINE 10000   /* 10 us buckets up to 100 ms */
#define HIST_COARSE 60000 /* then 1 ms buckets up to 60 s */
#define HIST_SIZE (HIST_FINE + HIST_COARSE)
#define STDIN_TAG UINT64_MAX

enum { ST_IDLE, ST_CONNECTING, ST_HEADERS, ST_BODY, ST_CLOSED, ST_FAILED };
enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END };

typedef struct {
  int fd;
  int room;
  uint8_t state, chunked, chunk_state, pending_cr, status_seen, status_ok, ev_has_data, attempts;
  int64_t chunk_left;
  int64_t ev_seq;
  int64_t ev_t;
  int64_t last_seq;
  int linelen;
  char line[LINE_CAP];
} conn_t;

typedef struct {
  int64_t conns, unique, dups, gaps, other;
} room_stats_t;

static conn_t *conns;
static int nconns, nrooms, port, max_pending = 200, max_attempts = 3;
static char **room_names;
static const char *path_template = "/events/%s";
static const char *host_header = "127.0.0.1";
static struct sockaddr_in dst, src;
static int have_src;
static int epfd;
static int64_t events_total, bytes_total, other_events, closed_by_server, failed, established, pending, next_to_open;
static int64_t http_errors;
static uint64_t hist[HIST_SIZE];
static room_stats_t *rooms;
static int64_t t_start_us, t_connected_us = -1;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_now;

static void record_latency(int64_t us) {
  size_t i;
  if (us < 0) us = 0;
  if (us < 100000) i = (size_t)(us / 10);
  else {
    int64_t k = (us - 100000) / 1000;
    if (k >= HIST_COARSE) k = HIST_COARSE - 1;
    i = HIST_FINE + (size_t)k;
  }
  hist[i]++;
}

static int64_t bucket_upper_us(size_t i) {
  return i < HIST_FINE ? (int64_t)(i + 1) * 10 : 100000 + (int64_t)(i - HIST_FINE + 1) * 1000;
}

static void close_conn(conn_t *c, int state) {
  if (c->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  c->state = (uint8_t)state;
}

static void open_conn(int i);

static void connection_lost_during_setup(conn_t *c, int i) {
  pending--;
  close_conn(c, ST_FAILED);
  if (c->attempts < max_attempts) open_conn(i);
  else failed++;
}

static void open_conn(int i) {
  conn_t *c = &conns[i];
  c->attempts++;
  c->state = ST_CONNECTING;
  c->linelen = 0;
  c->pending_cr = 0;
  c->status_seen = c->status_ok = 0;
  c->chunked = 0;
  c->chunk_state = CH_SIZE;
  c->chunk_left = 0;
  pending++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { pending--; c->state = ST_FAILED; failed++; return; }
  c->fd = fd;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (have_src) {
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) { connection_lost_during_setup(c, i); return; }
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
    connection_lost_during_setup(c, i);
  }
}

static void open_more(void) {
  while (pending < max_pending && next_to_open < nconns) open_conn((int)next_to_open++);
}

static int starts_with_ci(const char *s, int len, const char *prefix) {
  int n = (int)strlen(prefix);
  if (len < n) return 0;
  return strncasecmp(s, prefix, (size_t)n) == 0;
}

static int64_t parse_digits(const char *p, const char *end) {
  int64_t v = 0;
  int any = 0;
  while (p < end && *p >= '0' && *p <= '9') { v = v * 10 + (*p - '0'); p++; any = 1; }
  return any ? v : -1;
}

static void dispatch_event(conn_t *c) {
  if (!c->ev_has_data) return;
  events_total++;
  room_stats_t *r = &rooms[c->room];
  if (c->ev_seq < 0) { other_events++; r->other++; }
  else {
    if (c->ev_seq > c->last_seq) {
      if (c->ev_seq > c->last_seq + 1) r->gaps += c->ev_seq - c->last_seq - 1;
      c->last_seq = c->ev_seq;
      r->unique++;
    } else r->dups++;
  }
  if (c->ev_t > 0) record_latency(wall_now - c->ev_t);
}

static void sse_line(conn_t *c, const char *line, int len) {
  if (len == 0) {
    dispatch_event(c);
    c->ev_has_data = 0;
    c->ev_seq = -1;
    c->ev_t = -1;
    return;
  }
  if (line[0] == ':') return;
  if (len >= 4 && memcmp(line, "data", 4) == 0 && (len == 4 || line[4] == ':')) {
    c->ev_has_data = 1;
    const char *end = line + len;
    for (const char *p = line + 4; p + 2 < end; p++) {
      p = memchr(p, '#', (size_t)(end - p));
      if (!p || p + 2 >= end) break;
      if (p[1] == 'S') c->ev_seq = parse_digits(p + 2, end);
      else if (p[1] == 'T') c->ev_t = parse_digits(p + 2, end);
    }
  }
}

static void header_line(conn_t *c, const char *line, int len) {
  if (!c->status_seen) {
    c->status_seen = 1;
    c->status_ok = len >= 12 && memcmp(line, "HTTP/1.", 7) == 0 && memcmp(line + 9, "200", 3) == 0;
    return;
  }
  if (len == 0) {
    if (!c->status_ok) { http_errors++; c->attempts = (uint8_t)max_attempts; return; }
    c->state = ST_BODY;
    c->ev_has_data = 0;
    c->ev_seq = -1;
    c->ev_t = -1;
    pending--;
    established++;
    return;
  }
  if (starts_with_ci(line, len, "transfer-encoding:")) {
    for (int k = 18; k + 7 <= len; k++)
      if (strncasecmp(line + k, "chunked", 7) == 0) c->chunked = 1;
  }
}

/* Splits decoded body bytes into lines (CR, LF or CRLF) and hands them to the SSE parser. */
static void feed_lines(conn_t *c, const char *p, size_t n) {
  const char *end = p + n;
  while (p < end) {
    if (c->pending_cr) {
      c->pending_cr = 0;
      if (*p == '\n') { p++; continue; }
    }
    const char *q = p;
    while (q < end && *q != '\n' && *q != '\r') q++;
    size_t take = (size_t)(q - p);
    if (take) {
      size_t room = LINE_CAP - (size_t)c->linelen;
      size_t copy = take < room ? take : room;
      memcpy(c->line + c->linelen, p, copy);
      c->linelen += (int)copy;
    }
    if (q == end) break;
    if (*q == '\r') c->pending_cr = 1;
    sse_line(c, c->line, c->linelen);
    c->linelen = 0;
    p = q + 1;
  }
}

static void feed_body(conn_t *c, const char *p, size_t n) {
  if (!c->chunked) { feed_lines(c, p, n); return; }
  const char *end = p + n;
  while (p < end) {
    switch (c->chunk_state) {
      case CH_SIZE: {
        char ch = *p++;
        if (ch >= '0' && ch <= '9') c->chunk_left = c->chunk_left * 16 + (ch - '0');
        else if (ch >= 'a' && ch <= 'f') c->chunk_left = c->chunk_left * 16 + (ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') c->chunk_left = c->chunk_left * 16 + (ch - 'A' + 10);
        else if (ch == '\n') c->chunk_state = c->chunk_left ? CH_DATA : CH_DATA_END;
        else if (ch == ';') c->chunk_state = CH_EXT;
        break;
      }
      case CH_EXT:
        if (*p++ == '\n') c->chunk_state = c->chunk_left ? CH_DATA : CH_DATA_END;
        break;
      case CH_DATA: {
        size_t take = (size_t)(end - p);
        if ((int64_t)take > c->chunk_left) take = (size_t)c->chunk_left;
        feed_lines(c, p, take);
        p += take;
        c->chunk_left -= (int64_t)take;
        if (c->chunk_left == 0) c->chunk_state = CH_DATA_END;
        break;
      }
      case CH_DATA_END:
        if (*p++ == '\n') { c->chunk_state = CH_SIZE; c->chunk_left = 0; }
        break;
    }
  }
}

static char rbuf[1 << 16];

static void on_readable(int i) {
  conn_t *c = &conns[i];
  for (;;) {
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n > 0) {
      bytes_total += n;
      const char *p = rbuf;
      size_t left = (size_t)n;
      if (c->state == ST_HEADERS) {
        /* header bytes: line by line until the blank line, then the remainder is body */
        const char *end = rbuf + n;
        while (p < end && c->state == ST_HEADERS) {
          const char *q = memchr(p, '\n', (size_t)(end - p));
          const char *stop = q ? q : end;
          int take = (int)(stop - p);
          if (take > 0 && stop[-1] == '\r' && q) take--;
          if (c->linelen + take > LINE_CAP) take = LINE_CAP - c->linelen;
          memcpy(c->line + c->linelen, p, (size_t)take);
          c->linelen += take;
          if (!q) { p = end; break; }
          int l = c->linelen;
          if (l > 0 && c->line[l - 1] == '\r') l--;
          c->linelen = 0;
          header_line(c, c->line, l);
          p = q + 1;
          if (c->status_seen && !c->status_ok && l == 0) { connection_lost_during_setup(c, i); open_more(); return; }
        }
        left = (size_t)(end - p);
        if (c->state == ST_BODY) open_more();
      }
      if (left && c->state == ST_BODY) feed_body(c, p, left);
      if ((size_t)n < sizeof rbuf) return;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      if (c->state == ST_BODY) { closed_by_server++; close_conn(c, ST_CLOSED); }
      else { connection_lost_during_setup(c, i); open_more(); }
      return;
    } else if (errno == EAGAIN) return;
  }
}

static void on_writable(int i) {
  conn_t *c = &conns[i];
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) { connection_lost_during_setup(c, i); open_more(); return; }
  char req[1024];
  char path[512];
  snprintf(path, sizeof path, path_template, room_names[c->room]);
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                   path, host_header);
  if (write(c->fd, req, (size_t)n) != n) { connection_lost_during_setup(c, i); open_more(); return; }
  c->state = ST_HEADERS;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void print_rooms(void) {
  printf("\"rooms\":[");
  for (int r = 0; r < nrooms; r++) {
    int64_t min_last = -1, max_last = -1, open = 0;
    for (int i = r; i < nconns; i += 1) {
      if (conns[i].room != r || conns[i].state != ST_BODY) continue;
      open++;
      if (min_last < 0 || conns[i].last_seq < min_last) min_last = conns[i].last_seq;
      if (conns[i].last_seq > max_last) max_last = conns[i].last_seq;
    }
    printf("%s{\"name\":\"%s\",\"open\":%lld,\"unique\":%lld,\"dups\":%lld,\"gaps\":%lld,\"other\":%lld,\"minLast\":%lld,\"maxLast\":%lld}",
           r ? "," : "", room_names[r], (long long)open, (long long)rooms[r].unique, (long long)rooms[r].dups,
           (long long)rooms[r].gaps, (long long)rooms[r].other, (long long)min_last, (long long)max_last);
  }
  printf("]");
}

static void print_progress(void) {
  printf("{\"type\":\"progress\",\"events\":%lld,\"closed\":%lld,\"minLast\":[", (long long)events_total,
         (long long)closed_by_server);
  int64_t *mins = calloc((size_t)nrooms, sizeof *mins);
  for (int r = 0; r < nrooms; r++) mins[r] = -1;
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    if (c->state != ST_BODY) continue;
    if (mins[c->room] < 0 || c->last_seq < mins[c->room]) mins[c->room] = c->last_seq;
  }
  for (int r = 0; r < nrooms; r++) printf("%s%lld", r ? "," : "", (long long)mins[r]);
  free(mins);
  printf("]}\n");
  fflush(stdout);
}

static void print_mark(void) {
  printf("{\"type\":\"mark\",\"tUs\":%lld,\"events\":%lld,\"bytes\":%lld,\"other\":%lld,\"established\":%lld,\"failed\":%lld,\"closed\":%lld,\"httpErrors\":%lld,",
         (long long)now_us(), (long long)events_total, (long long)bytes_total, (long long)other_events,
         (long long)established, (long long)failed, (long long)closed_by_server, (long long)http_errors);
  print_rooms();
  printf(",\"hist\":[");
  int first = 1;
  for (size_t i = 0; i < HIST_SIZE; i++) {
    if (!hist[i]) continue;
    printf("%s[%lld,%llu]", first ? "" : ",", (long long)bucket_upper_us(i), (unsigned long long)hist[i]);
    first = 0;
  }
  printf("]}\n");
  fflush(stdout);
  memset(hist, 0, sizeof hist);
}

static void usage(void) {
  fprintf(stderr,
          "usage: sse-load --port P --conns N --rooms a,b,c [--host 127.0.0.1] [--src 127.0.0.2]\n"
          "                [--path '/events/%%s'] [--offset K] [--max-pending 200] [--deadline-s 600]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *rooms_arg = NULL, *src_arg = NULL;
  int offset = 0, deadline_s = 600;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--conns")) nconns = atoi(v);
    else if (!strcmp(a, "--rooms")) rooms_arg = v;
    else if (!strcmp(a, "--src")) src_arg = v;
    else if (!strcmp(a, "--path")) path_template = v;
    else if (!strcmp(a, "--offset")) offset = atoi(v);
    else if (!strcmp(a, "--max-pending")) max_pending = atoi(v);
    else if (!strcmp(a, "--attempts")) max_attempts = atoi(v);
    else if (!strcmp(a, "--deadline-s")) deadline_s = atoi(v);
    else usage();
    i++;
  }
  if (!port || nconns <= 0 || !rooms_arg) usage();
  host_header = host;

  char *rooms_copy = strdup(rooms_arg);
  room_names = calloc(4096, sizeof *room_names);
  for (char *tok = strtok(rooms_copy, ","); tok && nrooms < 4096; tok = strtok(NULL, ",")) room_names[nrooms++] = tok;
  rooms = calloc((size_t)nrooms, sizeof *rooms);

  memset(&dst, 0, sizeof dst);
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) usage();
  if (src_arg) {
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, src_arg, &src.sin_addr) != 1) usage();
    have_src = 1;
  }

  conns = calloc((size_t)nconns, sizeof *conns);
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    conns[i].room = (offset + i) % nrooms;
    conns[i].last_seq = 0;
    rooms[conns[i].room].conns++;
  }

  epfd = epoll_create1(EPOLL_CLOEXEC);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);

  t_start_us = mono_us();
  int64_t deadline = t_start_us + (int64_t)deadline_s * 1000000;
  int64_t next_progress = 0;
  open_more();

  struct epoll_event evs[1024];
  char cmd[256];
  int cmdlen = 0;
  for (;;) {
    int n = epoll_wait(epfd, evs, 1024, 20);
    wall_now = now_us();
    for (int k = 0; k < n; k++) {
      uint64_t tag = evs[k].data.u64;
      if (tag == STDIN_TAG) {
        char b[256];
        ssize_t r = read(0, b, sizeof b);
        if (r == 0) return 0;
        for (ssize_t j = 0; j < r; j++) {
          if (b[j] != '\n') { if (cmdlen < 255) cmd[cmdlen++] = b[j]; continue; }
          cmd[cmdlen] = 0;
          cmdlen = 0;
          if (!strcmp(cmd, "mark")) print_mark();
          else if (!strcmp(cmd, "quit")) return 0;
        }
        continue;
      }
      int i = (int)tag;
      conn_t *c = &conns[i];
      if (c->fd < 0) continue;
      if (c->state == ST_CONNECTING) {
        if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(i);
      } else if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(i);
      }
    }
    int64_t m = mono_us();
    if (t_connected_us < 0 && pending == 0 && next_to_open >= nconns) {
      t_connected_us = m;
      printf("{\"type\":\"connected\",\"established\":%lld,\"failed\":%lld,\"httpErrors\":%lld,\"ms\":%.1f}\n",
             (long long)established, (long long)failed, (long long)http_errors, (double)(m - t_start_us) / 1000.0);
      fflush(stdout);
      next_progress = m;
    }
    if (t_connected_us >= 0 && m >= next_progress) {
      print_progress();
      next_progress = m + 50000;
    }
    if (m > deadline) {
      fprintf(stderr, "sse-load: deadline reached, exiting\n");
      return 3;
    }
  }
}
