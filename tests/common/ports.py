"""Loopback ports for test servers, shared by the integration harness and the deploy checks."""
import socket


def free_ports(n):
    """n distinct loopback ports that were free a moment ago (all bound at once, then released:
    ports taken one after the other may repeat)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]
