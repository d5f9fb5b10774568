/* sgpkt: send raw Ethernet frames to the interface's own MAC and count what comes back.
 *
 * vdpa_sim_net loops every transmitted frame back to the receive queue, so frames sent to
 * the guest's own address must all return. Built statically at asset-build time and shipped
 * in the L2 initramfs (busybox has no packet generator).
 *
 *   sgpkt send IFACE COUNT [TIMEOUT_MS]
 *       send COUNT frames, wait up to TIMEOUT_MS (default 2000) for them to come back;
 *       prints "sent N received M lost L"; exit 0 when every frame came back, 3 otherwise.
 *   sgpkt stream IFACE INTERVAL_US OUTFILE
 *       send one frame every INTERVAL_US until killed; for every frame received append
 *       "SEQ TX_NS RX_NS" (CLOCK_REALTIME of the guest) to OUTFILE: the largest gap between
 *       consecutive RX_NS is the datapath pause the guest saw (e.g. across a migration).
 *
 * Frames use the local experimental EtherType 0x88B5 and carry a magic, a sequence number
 * and the send time, so only our own frames are counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETHERTYPE_SG 0x88B5
#define MAGIC 0x53475042u /* "SGPB" */
#define FRAME_LEN 64

struct payload {
    uint32_t magic;
    uint32_t pid;
    uint64_t seq;
    uint64_t tx_ns;
} __attribute__((packed));

static int sock_fd;
static unsigned char own_mac[6];
static struct sockaddr_ll dest;
static uint32_t my_pid;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static void die(const char *what)
{
    fprintf(stderr, "sgpkt: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void open_iface(const char *ifname)
{
    struct ifreq ifr;

    sock_fd = socket(AF_PACKET, SOCK_RAW, htons(ETHERTYPE_SG));
    if (sock_fd < 0)
        die("socket(AF_PACKET)");
    /* A burst of 200 looped-back frames (~2 KiB truesize each) overflows the default
     * receive buffer (~208 KiB) while we are still sending: the kernel drops them at the
     * socket, after the NIC counted them. Root in L2: force a larger buffer. */
    int rcvbuf = 8 << 20;
    if (setsockopt(sock_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
        (void)setsockopt(sock_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(sock_fd, SIOCGIFHWADDR, &ifr) < 0)
        die("SIOCGIFHWADDR");
    memcpy(own_mac, ifr.ifr_hwaddr.sa_data, 6);
    memset(&dest, 0, sizeof(dest));
    dest.sll_family = AF_PACKET;
    dest.sll_protocol = htons(ETHERTYPE_SG);
    dest.sll_ifindex = (int)if_nametoindex(ifname);
    if (dest.sll_ifindex == 0)
        die("if_nametoindex");
    dest.sll_halen = 6;
    memcpy(dest.sll_addr, own_mac, 6);
    if (bind(sock_fd, (struct sockaddr *)&dest, sizeof(dest)) < 0)
        die("bind");
    my_pid = (uint32_t)getpid();
}

static void send_frame(uint64_t seq)
{
    unsigned char frame[FRAME_LEN];
    struct ether_header *eh = (struct ether_header *)frame;
    struct payload p = { MAGIC, my_pid, seq, now_ns() };

    memset(frame, 0, sizeof(frame));
    memcpy(eh->ether_dhost, own_mac, 6);
    memcpy(eh->ether_shost, own_mac, 6);
    eh->ether_type = htons(ETHERTYPE_SG);
    memcpy(frame + sizeof(*eh), &p, sizeof(p));
    if (sendto(sock_fd, frame, sizeof(frame), 0, (struct sockaddr *)&dest, sizeof(dest)) < 0)
        die("sendto");
}

/* Read one frame if any; returns 1 and fills *p for one of our frames that came back in. */
static int recv_frame(struct payload *p)
{
    unsigned char frame[2048];
    struct sockaddr_ll from;
    socklen_t len = sizeof(from);
    ssize_t n = recvfrom(sock_fd, frame, sizeof(frame), MSG_DONTWAIT, (struct sockaddr *)&from, &len);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        die("recvfrom");
    }
    /* PACKET_OUTGOING is our own transmission seen by the tap: not a looped-back frame. */
    if (from.sll_pkttype == PACKET_OUTGOING || n < (ssize_t)(sizeof(struct ether_header) + sizeof(*p)))
        return 0;
    memcpy(p, frame + sizeof(struct ether_header), sizeof(*p));
    return p->magic == MAGIC && p->pid == my_pid;
}

static int cmd_send(unsigned long count, unsigned long timeout_ms)
{
    unsigned long received = 0;
    struct payload p;
    struct pollfd pfd = { sock_fd, POLLIN, 0 };
    uint64_t deadline;

    for (unsigned long i = 0; i < count; i++) {
        send_frame(i);
        while (recv_frame(&p))
            received++;
    }
    deadline = mono_ms() + timeout_ms;
    while (received < count && mono_ms() < deadline) {
        int left = (int)(deadline - mono_ms());
        if (poll(&pfd, 1, left > 0 ? left : 0) < 0 && errno != EINTR)
            die("poll");
        while (recv_frame(&p))
            received++;
    }
    printf("sent %lu received %lu lost %lu\n", count, received, count - received);
    return received == count ? 0 : 3;
}

static int cmd_stream(unsigned long interval_us, const char *path)
{
    int out = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    struct pollfd pfd = { sock_fd, POLLIN, 0 };
    uint64_t seq = 0, next_tx = 0;
    struct payload p;
    char line[96];

    if (out < 0)
        die("open OUTFILE");
    for (;;) {
        uint64_t now = now_ns();
        int wait_ms;

        if (now >= next_tx) {
            send_frame(seq++);
            next_tx = now + (uint64_t)interval_us * 1000ull;
        }
        wait_ms = (int)((next_tx - now) / 1000000ull);
        if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
            die("poll");
        while (recv_frame(&p)) {
            int n = snprintf(line, sizeof(line), "%llu %llu %llu\n", (unsigned long long)p.seq,
                             (unsigned long long)p.tx_ns, (unsigned long long)now_ns());
            if (write(out, line, (size_t)n) != n)
                die("write OUTFILE");
        }
    }
    return 0; /* not reached: runs until killed */
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "send") == 0) {
        open_iface(argv[2]);
        return cmd_send(strtoul(argv[3], NULL, 10), argc >= 5 ? strtoul(argv[4], NULL, 10) : 2000);
    }
    if (argc == 5 && strcmp(argv[1], "stream") == 0) {
        open_iface(argv[2]);
        return cmd_stream(strtoul(argv[3], NULL, 10), argv[4]);
    }
    fprintf(stderr, "usage: sgpkt send IFACE COUNT [TIMEOUT_MS] | sgpkt stream IFACE INTERVAL_US OUTFILE\n");
    return 2;
}
