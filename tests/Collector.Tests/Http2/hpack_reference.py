#!/usr/bin/python3
"""Independent HPACK encoder for HpackPropertyTests (Debian's python3-hpack).

stdin: {"connections": [{"blocks": [{"table_sizes": [int...], "huffman": bool,
                                     "headers": [[name_hex, value_hex, sensitive], ...]}, ...]}, ...]}
stdout: {"connections": [[[block_hex, table_size, table_entries], ...], ...]}
        table_size / table_entries: the encoder's dynamic table after the block.

With the argument --tables it prints the static table and the Huffman code instead, so the test can
compare the decoder's constants with this implementation's.
"""
import json
import sys

import hpack
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable


def tables():
    return {
        "static": [[n.hex(), v.hex()] for n, v in HeaderTable.STATIC_TABLE],
        "codes": list(REQUEST_CODES),
        "lengths": list(REQUEST_CODES_LENGTH),
    }


def encode(spec):
    out = []
    for conn in spec["connections"]:
        encoder = hpack.Encoder()
        blocks = []
        for block in conn["blocks"]:
            for size in block.get("table_sizes", []):
                # hpack records a change only when it differs from the current size, and forgets to
                # signal an earlier recorded one if a later assignment does not differ: skip no-ops.
                if size != encoder.header_table_size:
                    encoder.header_table_size = size
            headers = [(bytes.fromhex(n), bytes.fromhex(v), bool(s)) for n, v, s in block["headers"]]
            data = encoder.encode(headers, huffman=block["huffman"])
            table = encoder.header_table
            blocks.append([data.hex(), table._current_size, len(table.dynamic_entries)])
        out.append(blocks)
    return {"connections": out}


def main():
    if sys.argv[1:] == ["--tables"]:
        result = tables()
    else:
        result = encode(json.load(sys.stdin))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
