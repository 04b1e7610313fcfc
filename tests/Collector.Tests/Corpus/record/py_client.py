"""python urllib client for the capture corpus: py_client.py URL METHOD [BODY]."""
import sys
import urllib.request

url, method = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method)
if data is not None:
    req.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(req) as r:
        r.read()
except urllib.error.HTTPError as e:
    e.read()
