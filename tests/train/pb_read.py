"""pb_read.py: a reader of the protocol buffer wire format, for the tests that check what nnc
encodes (tensorboard_events.py, onnx_export.py), written from the format's definition: a message
is a sequence of fields, each a varint key (field number << 3 | wire type) and a value."""


def varint(buf, i):
    """The varint at buf[i:] and the position after it."""
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def fields(buf):
    """A message's (field number, wire type, value) triples: an int for a varint (int64: signed),
    the raw bytes otherwise."""
    i, res = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(buf, i)
            if v >= 1 << 63:
                v -= 1 << 64
        elif w == 1:
            v, i = buf[i:i + 8], i + 8
        elif w == 5:
            v, i = buf[i:i + 4], i + 4
        elif w == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {w}")
        res.append((f, w, v))
    return res
