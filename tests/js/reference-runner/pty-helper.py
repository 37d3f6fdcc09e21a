#!/usr/bin/env python3
"""Runs a program on a new pseudo-terminal, for reference-runner.js.

Node's standard library has no PTY; Python's has one, so this helper needs
no native build. Usage: pty-helper.py ROWS COLS PROGRAM [ARG...]

  stdin   bytes typed into the terminal
  stdout  bytes the terminal printed
  fd 3    resize requests, one "ROWS COLS" line each
  status  the program's exit code, or 128 + the signal that ended it

SIGTERM ends every process of the terminal's session and the helper.
"""
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def kill_session(sid):
    """SIGKILL to every process whose session is `sid` (the shell's)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                os.kill(int(name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main():
    rows, cols, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    master, slave = os.openpty()
    set_size(slave, rows, cols)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.closerange(3, 1024)
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"pty-helper: {argv[0]}: {e.strerror}\n".encode())
        os._exit(127)
    os.close(slave)
    signal.signal(signal.SIGTERM, lambda *_: (kill_session(pid), os._exit(143)))

    inputs, control, status = [master, 0, 3], b"", None
    while True:
        ready, _, _ = select.select(inputs, [], [], 0.2)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                break  # every process of the terminal closed it
            write_all(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                write_all(master, data)
            else:
                inputs.remove(0)
        if 3 in ready:
            data = os.read(3, 4096)
            if not data:
                inputs.remove(3)
            control += data
            while b"\n" in control:
                line, control = control.split(b"\n", 1)
                try:
                    r, c = (int(x) for x in line.split())
                    set_size(master, r, c)
                except (ValueError, OSError):
                    pass
        if not ready:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = wait_status
                break  # the shell is gone though something still holds the terminal
    if status is None:
        _, status = os.waitpid(pid, 0)
    kill_session(pid)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
