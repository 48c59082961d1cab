/* tbsysbench: testbed's system-call micro-benchmark server.
 *
 * It runs inside the instance (native process, container, gVisor sandbox, VM guest) and
 * measures, on request, the cost of system calls there.  The load generator is the client
 * on the lab network; this program only answers line-oriented requests on a TCP port:
 *
 *   ping                      -> pong
 *   gettimeofday N            -> result name=gettimeofday_syscall ... (raw syscall(SYS_gettimeofday))
 *                                result name=gettimeofday_vdso ...    (libc gettimeofday(), the vDSO path)
 *   getppid N                 -> result name=getppid_syscall ...      (a null system call)
 *   openclose N [rootfs|tmp|host-tmpfs] -> result name=openclose_<where> ... (open(O_RDONLY) + close of one file)
 *   every answer but pong ends with a line "end"; errors are "error <reason>" lines.
 *
 * A result line is: result name=NAME calls=N total_ns=T ns_per_call=X
 * "rootfs" opens this program's own file (on the image's root filesystem, which gVisor
 * serves through its gofer); "tmp" opens a file this program created in /tmp at start;
 * "host-tmpfs" one it creates at the first such request in the directory given with -H (default
 * /mnt/host-tmpfs): a host tmpfs the platform bind-mounts into the instance, which it marks with
 * a file named .testbed-host-tmpfs (without the marker the request is an error: the directory
 * would be the instance's own).
 *
 * Usage: tbsysbench [-p port] [-H dir]   (default 7777). Built with gcc -static -O2 by testbed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CALLS 100000000L  /* bound on any loop a request can ask for */
#define LINE_MAX_LEN 256

static char self_path[4096];
static char tmp_path[] = "/tmp/tbsysbench.dat";
static char host_dir[1024] = "/mnt/host-tmpfs";
static char host_path[1100] = "";

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void reply(int fd, const char *text) {
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        text += n;
        len -= (size_t)n;
    }
}

static void result(int fd, const char *name, long calls, uint64_t total) {
    char buf[LINE_MAX_LEN];
    snprintf(buf, sizeof buf, "result name=%s calls=%ld total_ns=%llu ns_per_call=%.3f\n", name, calls,
             (unsigned long long)total, (double)total / (double)calls);
    reply(fd, buf);
}

static void error_line(int fd, const char *what) {
    char buf[sizeof self_path + LINE_MAX_LEN];
    snprintf(buf, sizeof buf, "error %s\n", what);
    reply(fd, buf);
}

static int bench_gettimeofday(int fd, long n) {
    struct timeval tv;
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (syscall(SYS_gettimeofday, &tv, NULL) != 0) {
            error_line(fd, "syscall(SYS_gettimeofday) failed");
            return -1;
        }
    }
    result(fd, "gettimeofday_syscall", n, now_ns() - t0);
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (gettimeofday(&tv, NULL) != 0) {
            error_line(fd, "gettimeofday() failed");
            return -1;
        }
    }
    result(fd, "gettimeofday_vdso", n, now_ns() - t0);
    return 0;
}

static int bench_getppid(int fd, long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    result(fd, "getppid_syscall", n, now_ns() - t0);
    return 0;
}

/* The file in the host tmpfs directory, created on first use; 0, or -1 after an error line. */
static int host_file(int fd) {
    char marker[1100], buf[1300];
    if (host_path[0] != '\0')
        return 0;
    snprintf(marker, sizeof marker, "%s/.testbed-host-tmpfs", host_dir);
    if (access(marker, F_OK) != 0) {
        snprintf(buf, sizeof buf, "openclose host-tmpfs: no host tmpfs at %.200s (%.240s is missing: the platform "
                 "mounts none; set host_tmpfs: true on it)", host_dir, marker);
        error_line(fd, buf);
        return -1;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/tbsysbench.%d.dat", host_dir, (int)getpid());
    int tf = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tf < 0 || write(tf, "testbed\n", 8) != 8) {
        snprintf(buf, sizeof buf, "openclose host-tmpfs: cannot create %s: %.100s", path, strerror(errno));
        error_line(fd, buf);
        if (tf >= 0)
            close(tf);
        return -1;
    }
    close(tf);
    memcpy(host_path, path, sizeof host_path);
    return 0;
}

static int bench_openclose(int fd, long n, const char *where) {
    const char *path;
    char name[64];
    if (strcmp(where, "rootfs") == 0) {
        path = self_path;
    } else if (strcmp(where, "tmp") == 0) {
        path = tmp_path;
    } else if (strcmp(where, "host-tmpfs") == 0) {
        if (host_file(fd) != 0)
            return -1;
        path = host_path;
    } else {
        error_line(fd, "openclose: where must be rootfs, tmp or host-tmpfs");
        return -1;
    }
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int f = open(path, O_RDONLY | O_CLOEXEC);
        if (f < 0) {
            char buf[sizeof self_path + 128];
            snprintf(buf, sizeof buf, "open %s: %.100s", path, strerror(errno));
            error_line(fd, buf);
            return -1;
        }
        close(f);
    }
    snprintf(name, sizeof name, "openclose_%s", where);
    result(fd, name, n, now_ns() - t0);
    return 0;
}

static void handle(int fd, char *line) {
    char cmd[32] = "", arg[32] = "";
    long n = 0;
    int fields = sscanf(line, "%31s %ld %31s", cmd, &n, arg);
    if (fields >= 1 && strcmp(cmd, "ping") == 0) {
        reply(fd, "pong\n");
        return;
    }
    if (fields < 2 || n <= 0 || n > MAX_CALLS) {
        error_line(fd, "usage: gettimeofday N | getppid N | openclose N [rootfs|tmp|host-tmpfs] (0 < N <= 100000000)");
    } else if (strcmp(cmd, "gettimeofday") == 0) {
        bench_gettimeofday(fd, n);
    } else if (strcmp(cmd, "getppid") == 0) {
        bench_getppid(fd, n);
    } else if (strcmp(cmd, "openclose") == 0) {
        bench_openclose(fd, n, fields >= 3 ? arg : "rootfs");
    } else {
        error_line(fd, "unknown request");
    }
    reply(fd, "end\n");
}

static void serve(int fd) {
    char buf[LINE_MAX_LEN];
    size_t used = 0;
    for (;;) {
        ssize_t got = read(fd, buf + used, sizeof buf - 1 - used);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) continue;
            return;
        }
        used += (size_t)got;
        buf[used] = '\0';
        char *nl;
        while ((nl = memchr(buf, '\n', used)) != NULL) {
            *nl = '\0';
            handle(fd, buf);
            size_t rest = used - (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, rest);
            used = rest;
            buf[used] = '\0';
        }
        if (used == sizeof buf - 1) {  /* a line longer than any request: drop the client */
            error_line(fd, "request too long");
            return;
        }
    }
}

int main(int argc, char **argv) {
    int port = 7777, opt;
    while ((opt = getopt(argc, argv, "p:H:")) != -1) {
        if (opt == 'p') {
            port = atoi(optarg);
        } else if (opt == 'H' && strlen(optarg) < sizeof host_dir) {
            snprintf(host_dir, sizeof host_dir, "%s", optarg);
        } else {
            fprintf(stderr, "usage: %s [-p port] [-H dir]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (len <= 0) {
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    } else {
        self_path[len] = '\0';
    }
    int tf = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tf < 0 || write(tf, "testbed\n", 8) != 8) {
        fprintf(stderr, "tbsysbench: cannot create %s: %s\n", tmp_path, strerror(errno));
        return 1;
    }
    close(tf);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 16) != 0) {
        fprintf(stderr, "tbsysbench: cannot listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    fprintf(stderr, "tbsysbench: listening on port %d, rootfs file %s\n", port, self_path);
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR) continue;
            perror("accept");
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(c);  /* one client at a time: the measured loops never compete with each other */
        close(c);
    }
}
