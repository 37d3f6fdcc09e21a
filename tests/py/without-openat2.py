#!/usr/bin/env python3
"""Runs a command on a kernel that, for it, lacks openat2(2).

Installs a seccomp filter (through ctypes; no package needed) under which
the openat2 system call fails with ENOSYS, as on Linux before 5.6, then
executes the command. Every other system call is allowed. For the runner's
test that paths are refused there, not opened the racy way.

Usage: without-openat2.py PROGRAM [ARG...]
"""

import ctypes
import os
import platform
import struct
import sys

# openat2 has the same number in every architecture's table since 5.6.
NR_OPENAT2 = 437
ENOSYS = 38
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


def instruction(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: without-openat2.py PROGRAM [ARG...]")
    if platform.system() != "Linux":
        sys.exit("without-openat2.py: Linux only")
    program = b"".join(
        [
            # A = seccomp_data.nr (offset 0)
            instruction(BPF_LD_W_ABS, 0, 0, 0),
            # if A == openat2: next; else skip one
            instruction(BPF_JEQ_K, 0, 1, NR_OPENAT2),
            instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
            instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ]
    )
    filters = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.cast(filters, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("without-openat2.py: PR_SET_NO_NEW_PRIVS: " + os.strerror(ctypes.get_errno()))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        sys.exit("without-openat2.py: PR_SET_SECCOMP: " + os.strerror(ctypes.get_errno()))
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
