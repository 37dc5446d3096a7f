"""The plain datasketch near-dedup loop that ``bench/dedup_cmd.py`` times against
``assay dedup minhash``: read JSONL, MinHash + MinHashLSH(0.8), keep a doc unless it collides
with a kept one, write the kept docs. Usage: python bench/_datasketch_loop.py IN.jsonl OUT.jsonl"""

import json
import re
import sys

from datasketch import MinHash, MinHashLSH

WORD = re.compile(r"\w+")


def shingles(text, n=5):
    w = WORD.findall(text.lower())
    if len(w) < n:
        return [" ".join(w)] if w else []
    return [" ".join(w[i : i + n]) for i in range(len(w) - n + 1)]


def main(inp, out):
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    with open(inp) as f, open(out, "w") as g:
        for line in f:
            d = json.loads(line)
            m = MinHash(num_perm=128, seed=1)
            m.update_batch([s.encode() for s in shingles(d["text"])])
            if lsh.query(m):
                continue
            lsh.insert(d["id"], m)
            g.write(json.dumps(d) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
