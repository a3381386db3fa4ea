"""Code for a child process: root without the capabilities that bypass permission bits."""

#: Prepend to a child's script (before any thread starts: threads inherit capabilities):
#: as root it drops CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2), so root then meets
#: permission bits as an owner does; as anyone else it does nothing.
DROP_DAC = """
import ctypes as _ct, os as _os
if _os.geteuid() == 0:
    _libc = _ct.CDLL(None, use_errno=True)
    _hdr = (_ct.c_uint32 * 2)(0x20080522, 0)
    _data = (_ct.c_uint32 * 6)()
    assert _libc.capget(_hdr, _data) == 0
    for _i in (0, 1):
        _data[_i * 3] &= ~((1 << 1) | (1 << 2))
    assert _libc.capset(_hdr, _data) == 0, _ct.get_errno()
"""
