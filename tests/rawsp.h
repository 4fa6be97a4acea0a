/*
 * tests/rawsp.h — a peer that ignores the receive limit, for the tests of
 * oversized messages (net_test, badinput_test).
 *
 * An nng socket with an unfinished write of a message the other side refuses
 * to read cannot always be closed (nng 1.5's nng_close then waits forever), so
 * such a peer is played on a plain TCP socket with send/receive timeouts.
 */
#ifndef FL_TESTS_RAWSP_H
#define FL_TESTS_RAWSP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Sends `total` bytes as one SP message (nng's TCP framing: an 8-byte
 * handshake, then an 8-byte big-endian length and the payload) on a plain TCP
 * socket, as a peer that ignores the coordinator's limit would. Returns the
 * bytes written before the coordinator stopped reading or dropped us (each
 * write waits at most 2 s). A raw socket, not nng: an nng socket with such an
 * unfinished write cannot be closed. */
static inline size_t raw_oversized(int port, uint64_t total)
{
	static const uint8_t hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0}; /* REQ0 */
	struct sockaddr_in a;
	struct timeval tv = {2, 0};
	uint8_t hdr[8], buf[65536], peer[8];
	size_t sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    send(fd, hello, 8, MSG_NOSIGNAL) != 8 || recv(fd, peer, 8, MSG_WAITALL) != 8)
		goto done;
	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(total >> (56 - 8 * i));
	if (send(fd, hdr, 8, MSG_NOSIGNAL) != 8)
		goto done;
	memset(buf, 0, sizeof buf);
	buf[0] = 0x80; /* a request id, as REQ0 puts first */
	while (sent < total) {
		ssize_t k = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
		if (k <= 0)
			break;
		sent += (size_t)k;
	}
done:
	close(fd);
	return sent;
}

#endif
