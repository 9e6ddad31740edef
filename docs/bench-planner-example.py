#!/usr/bin/env python3
"""A toy external planner for weft-bench (docs/bench.md): for each device the request names, a
task saving the request to weft-request.txt there, one after another; a refusal if none is named.
`python3 bench-planner-example.py [PORT]` serves POST /plan (it prints its port first);
`python3 bench-planner-example.py --stdio` answers one plan from stdin to stdout."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def plan(doc):
    text, tasks = doc["request"].lower(), []
    for d in doc["devices"]:
        named = d["name"] in text or d["name"].replace("-", " ") in text
        if named and any(t["name"] == "file.write" for t in d["tools"]):
            args = {"path": "weft-request.txt", "content": doc["request"]}
            tasks.append({"id": f"t{len(tasks) + 1}", "title": "save the request",
                          "instruction": f"save the request on {d['name']}", "device": d["name"],
                          "action": {"kind": "sim", "op": "file.write", "args": args}})
    if not tasks:
        return {"refuse": "the request names no device"}
    edges = [{"from": a["id"], "to": b["id"], "kind": "success"} for a, b in zip(tasks, tasks[1:])]
    return {"tasks": tasks, "edges": edges}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps(plan(doc)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdio"]:
        json.dump(plan(json.load(sys.stdin)), sys.stdout)
    else:
        server = HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
        print(server.server_port, flush=True)
        server.serve_forever()
