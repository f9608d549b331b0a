"""tests/formats/read_safetensors.py: nnc's file formats against NumPy.  Reads the safetensors
file that nnc's C writer made with a small pure-NumPy reader (and with safetensors.numpy when it
is installed), checks the .npy files from npy_write_f32 against numpy.load and numpy.save, and
saves .npy files for the C reader to check.  Run by interchange.sh:
    read_safetensors.py TEST_FORMATS DIR      (exit 77: numpy is missing)"""
import io
import json
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("skip: numpy is not installed")
    sys.exit(77)

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


def read_safetensors(path):
    """(tensors in file order, metadata, header size); the data must be contiguous."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data, tensors, end = raw[8 + n:], {}, 0
    for name, info in header.items():
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name}: data starts at {begin}, expected {end}"
        tensors[name] = np.frombuffer(data[begin:stop], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        end = stop
    assert end == len(data), f"{len(data) - end} bytes after the last tensor"
    return tensors, meta, n


failures = 0


def check(what, cond):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    failures += not cond


def same(got, want):
    return list(got) == list(want) and all(
        got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and np.array_equal(got[k], want[k]) for k in want)


def main():
    exe, d = sys.argv[1], sys.argv[2]
    subprocess.run([exe, "write", d], check=True)

    want = {  # the values format_test.c writes
        "w": (np.arange(12, dtype=np.float32) * np.float32(0.25) - np.float32(1)).reshape(3, 4),
        "b": np.arange(4) * 0.1,
        "step": np.array(1234567890123, dtype=np.int64),
        "idx": (np.arange(6, dtype=np.int64) * (1 << 40) - 3).reshape(2, 3),
        "count": np.array([-7, 2147483647], dtype=np.int32),
        "mask": np.array([0, 1, 127, 128, 255], dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    want_meta = {"format": "nnc", "step": "42", "note": 'quote " backslash \\ tab\t caf\u00e9'}
    tensors, meta, n = read_safetensors(f"{d}/sample.safetensors")
    check("safetensors: names (in order), dtypes, shapes and values", same(tensors, want))
    check("safetensors: metadata", meta == want_meta)
    check("safetensors: the data starts at a multiple of 8", (8 + n) % 8 == 0)
    try:
        from safetensors.numpy import load_file
    except ImportError:
        print("skip safetensors.numpy: not installed")
    else:
        loaded = load_file(f"{d}/sample.safetensors")
        check("safetensors.numpy.load_file reads it", sorted(loaded) == sorted(want) and same({k: loaded[k] for k in want}, want))

    values = np.arange(24, dtype=np.float32) * np.float32(0.5) - np.float32(3)
    for name, shape in [("c_2x3x4", (2, 3, 4)), ("c_scalar", ()), ("c_5", (5,)), ("c_0x3", (0, 3))]:
        a = values[:int(np.prod(shape))].reshape(shape)
        got = np.load(f"{d}/{name}.npy")
        saved = io.BytesIO()
        np.save(saved, a)
        with open(f"{d}/{name}.npy", "rb") as f:
            raw = f.read()
        check(f"numpy.load reads {name}.npy, byte for byte what numpy.save writes",
              got.dtype == np.float32 and got.shape == shape and np.array_equal(got, a) and raw == saved.getvalue())

    np.save(f"{d}/np_f32.npy", (np.arange(6, dtype=np.float32) * np.float32(0.5) - np.float32(1)).reshape(2, 3))
    np.save(f"{d}/np_f64.npy", np.arange(4) * 0.1)
    np.save(f"{d}/np_i64.npy", (np.arange(6, dtype=np.int64) - 2).reshape(3, 2))
    np.save(f"{d}/np_u8.npy", (np.arange(8) * 30).astype(np.uint8).reshape(2, 2, 2))
    np.save(f"{d}/np_bool.npy", np.array([True, False, True, True]))
    np.save(f"{d}/np_scalar.npy", np.float32(2.5))
    np.save(f"{d}/np_i32.npy", np.arange(5, dtype=np.int32))
    np.save(f"{d}/np_f64_labels.npy", np.array([0.0, 1.0, 2.0]))
    np.save(f"{d}/np_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(f"{d}/np_be.npy", np.arange(3).astype(">f4"))
    np.save(f"{d}/np_c8.npy", np.arange(3).astype(np.complex64))
    for v in (2, 3):
        with open(f"{d}/np_v{v}.npy", "wb") as f:
            np.lib.format.write_array(f, np.array([1, 2, 3], dtype=np.float32), version=(v, 0))
    sys.stdout.flush()
    check("the C reader reads what numpy.save wrote (test_formats check-npy)",
          subprocess.run([exe, "check-npy", d]).returncode == 0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
