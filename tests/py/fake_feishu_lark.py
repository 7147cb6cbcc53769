"""Feishu's own Python SDK (lark-oapi) against the fake Feishu platform.

Usage: fake_feishu_lark.py MANIFEST  (the manifest `wework-archive sim feishu` wrote).

Every check uses lark-oapi unchanged, built with domain = base_url: tenant tokens, the OAuth v2
token exchange, its EventDispatcherHandler receiving the fake's encrypted, signed pushes (and a
card callback), recordings and minutes media, drive listing, downloads and exports, wiki, IM send
and card patch, and ws.Client on the long connection. Exits 0 when all pass; prints the first
failure and exits 1 otherwise.
"""

import hashlib
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request

import lark_oapi as lark
from lark_oapi.api.authen.v1 import GetUserInfoRequest
from lark_oapi.api.drive.v1 import (CreateExportTaskRequest, DownloadExportTaskRequest, DownloadFileRequest,
                                    ExportTask, GetExportTaskRequest, ListFileRequest)
from lark_oapi.api.im.v1 import (CreateMessageRequest, CreateMessageRequestBody, PatchMessageRequest,
                                 PatchMessageRequestBody)
from lark_oapi.api.minutes.v1 import GetMinuteMediaRequest
from lark_oapi.api.vc.v1 import GetMeetingRecordingRequest
from lark_oapi.api.wiki.v2 import ListSpaceNodeRequest, ListSpaceRequest
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

M = json.load(open(sys.argv[1]))
BASE = M["base_url"]


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        os._exit(1)
    print(f"ok: {what}", flush=True)


def sim(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_for(cond, what, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    check(False, what)


client = lark.Client.builder().app_id(M["app_id"]).app_secret(M["app_secret"]).domain(BASE) \
    .log_level(lark.LogLevel.ERROR).build()

# --- events: lark's EventDispatcherHandler behind a plain HTTP server --------------------------
received = []          # (event_type, event_id, meeting id)
header_names = []      # header names of every push, as sent
card_clicks = []


def on_ended(data):
    received.append(("ended", data.header.event_id, data.event.meeting.id))


def on_ready(data):
    received.append(("ready", data.header.event_id, data.event.meeting.id))


def on_card(data):
    card_clicks.append(data.event.action.value)
    return P2CardActionTriggerResponse({
        "toast": {"type": "success", "content": "Authorized"},
        "card": {"type": "raw", "data": {"config": {"update_multi": True},
                                         "elements": [{"tag": "markdown", "content": "authorized"}]}},
    })


handler = lark.EventDispatcherHandler.builder(M["encrypt_key"], M["verification_token"]) \
    .register_p2_vc_meeting_all_meeting_ended_v1(on_ended) \
    .register_p2_vc_meeting_recording_ready_v1(on_ready) \
    .register_p2_card_action_trigger(on_card) \
    .build()


class Webhook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        req = lark.RawRequest()
        req.uri = self.path
        req.body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        req.headers = {k: v for k, v in self.headers.items()}
        header_names.append(list(req.headers.keys()))
        resp = handler.do(req)
        self.send_response(resp.status_code)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.content or b"")))
        self.end_headers()
        self.wfile.write(resp.content or b"")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook = f"http://127.0.0.1:{server.server_address[1]}/webhook/{M['app_id']}"
check(sim("/_sim/subscriptions", {"url": hook}) == {"ok": True},
      "subscription: lark's handler answered the encrypted url_verification")

# --- tokens: the flat v3 body, same token reused while >= 30 min remain ------------------------
def tenant_token():
    body = json.dumps({"app_id": M["app_id"], "app_secret": M["app_secret"]}).encode()
    req = urllib.request.Request(BASE + "/open-apis/auth/v3/tenant_access_token/internal", data=body,
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


t1, t2 = tenant_token(), tenant_token()
check(t1["code"] == 0 and t1["tenant_access_token"].startswith("t-") and t1["tenant_access_token"] == t2["tenant_access_token"]
      and 0 < t2["expire"] <= 7200, "tenant token reused with its remaining lifetime")

# --- VC recording and minutes media ---------------------------------------------------------
owner = M["users"][0]["open_id"]
meeting = sim("/_sim/meetings", {"owner_open_id": owner, "topic": "Weekly sync", "ready_after_s": 1.5, "bytes": 300000})
wait_for(lambda: any(e[0] == "ended" and e[2] == meeting["meeting_id"] for e in received),
         "lark handler received vc.meeting.all_meeting_ended_v1")
names = header_names[-1]
check("X-Lark-Signature" in names and "X-Lark-Request-Timestamp" in names and "X-Lark-Request-Nonce" in names,
      "push headers in Feishu's case")
rec = client.vc.v1.meeting_recording.get(GetMeetingRecordingRequest.builder().meeting_id(meeting["meeting_id"]).build())
check(rec.code == 124002 and rec.raw.status_code == 400, "recording answers 400/124002 while processing")
check(rec.get_log_id(), "X-Tt-Logid read by lark-oapi")
wait_for(lambda: any(e[0] == "ready" and e[2] == meeting["meeting_id"] for e in received),
         "lark handler received vc.meeting.recording_ready_v1")
rec = client.vc.v1.meeting_recording.get(GetMeetingRecordingRequest.builder().meeting_id(meeting["meeting_id"]).build())
check(rec.success() and int(rec.data.recording.duration) > 0, "recording ready")
minute_token = urllib.parse.urlparse(rec.data.recording.url).path.rstrip("/").split("/minutes/")[1]
check(minute_token == meeting["minute_token"], "minute token from the recording URL")
media = client.minutes.v1.minute_media.get(GetMinuteMediaRequest.builder().minute_token(minute_token).build())
check(media.success(), "minutes media download_url")
with urllib.request.urlopen(media.data.download_url) as r:
    mp4 = r.read()
    check(r.headers["Content-Disposition"].startswith("attachment"), "media Content-Disposition")
check(len(mp4) == meeting["bytes"] and hashlib.sha256(mp4).hexdigest() == meeting["sha256"] and mp4[4:8] == b"ftyp",
      "minutes media bytes match the fake's sha256")

ended_id = meeting["event_id"]
before = sum(1 for e in received if e[1] == ended_id)
check(sim("/_sim/events/redeliver", {"event_id": ended_id}) == {"ok": True}, "redeliver accepted")
wait_for(lambda: sum(1 for e in received if e[1] == ended_id) == before + 1, "redelivered event has the same event_id")

# --- IM: send a shared card, patch it, a click through card.action.trigger ---------------------
card = {"config": {"update_multi": True}, "elements": [{"tag": "markdown", "content": "Please authorize"}]}
sent = client.im.v1.message.create(CreateMessageRequest.builder().receive_id_type("open_id").request_body(
    CreateMessageRequestBody.builder().receive_id(owner).msg_type("interactive").content(json.dumps(card)).build()).build())
check(sent.success() and sent.data.message_id.startswith("om_"), "IM card sent")
mid = sent.data.message_id
card["elements"][0]["content"] = "Waiting"
patched = client.im.v1.message.patch(PatchMessageRequest.builder().message_id(mid).request_body(
    PatchMessageRequestBody.builder().content(json.dumps(card)).build()).build())
check(patched.success(), "card patched")
click = sim("/_sim/card-actions", {"message_id": mid, "open_id": owner, "value": {"session": "s1"}})
check(click["ok"] and click["response"]["card"]["type"] == "raw" and card_clicks == [{"session": "s1"}],
      "card.action.trigger handled by lark's dispatcher")
msg = [m for m in sim("/_sim/messages")["messages"] if m["message_id"] == mid][0]
check(len(msg["updates"]) == 2 and "authorized" in msg["updates"][1], "messages record the patch and the callback's card")

# --- Drive: listing, pagination, download, export -------------------------------------------
root = client.drive.v1.file.list(ListFileRequest.builder().build())
check(root.success() and not root.data.has_more and len(root.data.files) >= 5, "drive root listed")
projects = [f for f in root.data.files if f.name == "Projects"][0]
items, page = [], None
while True:
    b = ListFileRequest.builder().folder_token(projects.token).page_size(10)
    if page:
        b = b.page_token(page)
    r = client.drive.v1.file.list(b.build())
    check(r.success(), "drive page")
    items += r.data.files
    if not r.data.has_more:
        break
    page = r.data.next_page_token
tree = {n.get("token") or n.get("node_token"): n for n in sim("/_sim/tree")["nodes"]}
in_projects = [n for n in tree.values() if n.get("kind") == "drive" and n["parent"] == projects.token]
check(len(items) == len(in_projects) == 25 and len({f.token for f in items}) == 25
      and all(tree[f.token]["parent"] == projects.token for f in items), "drive pagination complete")
big = [f for f in root.data.files if f.type == "file" and tree[f.token]["size"] > 2_000_000][0]
dl = client.drive.v1.file.download(DownloadFileRequest.builder().file_token(big.token).build())
data = dl.file.read()
check(dl.success() and dl.file_name == big.name and hashlib.sha256(data).hexdigest() == tree[big.token]["sha256"],
      "file download with name and sha256")
doc = [f for f in items if f.type == "docx"][0]
task = client.drive.v1.export_task.create(CreateExportTaskRequest.builder().request_body(
    ExportTask.builder().file_extension("docx").token(doc.token).type("docx").build()).build())
check(task.success() and task.data.ticket, "export task created")
deadline = time.time() + 20
while True:
    st = client.drive.v1.export_task.get(GetExportTaskRequest.builder().ticket(task.data.ticket).token(doc.token).build())
    check(st.success(), "export task polled")
    if st.data.result.job_status == 0 and st.data.result.file_token:
        break
    check(st.data.result.job_status in (1, 2) and time.time() < deadline, "export task in progress")
    time.sleep(0.3)
ex = client.drive.v1.export_task.download(DownloadExportTaskRequest.builder().file_token(st.data.result.file_token).build())
check(ex.success() and hashlib.sha256(ex.file.read()).hexdigest() == tree[doc.token]["sha256"], "export download sha256")
slides = [f for f in items if f.type == "slides"][0]
bad = client.drive.v1.export_task.create(CreateExportTaskRequest.builder().request_body(
    ExportTask.builder().file_extension("pdf").token(slides.token).type("slides").build()).build())
check(bad.code == 99992402, "slides refused by export task creation")

# --- Wiki ----------------------------------------------------------------------------------
spaces = client.wiki.v2.space.list(ListSpaceRequest.builder().page_size(50).build())
check(spaces.success() and len(spaces.data.items) == 2, "wiki spaces")
sid = [s for s in spaces.data.items if s.name == "Engineering"][0].space_id
top = client.wiki.v2.space_node.list(ListSpaceNodeRequest.builder().space_id(sid).page_size(50).build())
check(top.success() and top.data.items, "wiki top nodes")
parent = [n for n in top.data.items if n.has_child][0]
children, page = [], None
while True:
    b = ListSpaceNodeRequest.builder().space_id(sid).parent_node_token(parent.node_token).page_size(50)
    if page:
        b = b.page_token(page)
    r = client.wiki.v2.space_node.list(b.build())
    children += r.data.items
    if not r.data.has_more:
        break
    page = r.data.page_token
expected = [n for n in tree.values() if n.get("kind") == "wiki" and n["parent"] == parent.node_token]
check(len(children) == len(expected) == 55, "wiki children across pages")

# --- OAuth v2 through lark's raw request -----------------------------------------------------
redirect = "http://127.0.0.1:9/auth/callback"
loc = sim("/_sim/authorize", {"client_id": M["app_id"], "redirect_uri": redirect, "state": "st8",
                              "open_id": owner, "decision": "approve", "scope": "offline_access im:message"})["location"]
q = urllib.parse.parse_qs(urllib.parse.urlparse(loc).query)
check(q["state"] == ["st8"], "authorize redirect keeps state")


def oauth(body):
    req = lark.BaseRequest.builder().http_method(lark.HttpMethod.POST).uri("/open-apis/authen/v2/oauth/token") \
        .token_types(set()).headers({"Content-Type": "application/json; charset=utf-8"}).body(body).build()
    return json.loads(client.request(req).raw.content)


tok = oauth({"grant_type": "authorization_code", "client_id": M["app_id"], "client_secret": M["app_secret"],
             "code": q["code"][0], "redirect_uri": redirect})
check(tok.get("access_token", "").startswith("u-") and tok.get("refresh_token") and tok["token_type"] == "Bearer",
      "authorization code exchanged")
again = oauth({"grant_type": "authorization_code", "client_id": M["app_id"], "client_secret": M["app_secret"],
               "code": q["code"][0], "redirect_uri": redirect})
check(again.get("code") not in (None, 0) and "access_token" not in again, "a code is single-use")
user_client = lark.Client.builder().app_id(M["app_id"]).app_secret(M["app_secret"]).domain(BASE) \
    .enable_set_token(True).log_level(lark.LogLevel.ERROR).build()
me = user_client.authen.v1.user_info.get(GetUserInfoRequest.builder().build(),
                                    lark.RequestOption.builder().user_access_token(tok["access_token"]).build())
check(me.success() and me.data.open_id == owner, "user_info with the user token")
new = oauth({"grant_type": "refresh_token", "client_id": M["app_id"], "client_secret": M["app_secret"],
             "refresh_token": tok["refresh_token"]})
check(new.get("refresh_token") and new["refresh_token"] != tok["refresh_token"], "refresh rotates the refresh token")
old = oauth({"grant_type": "refresh_token", "client_id": M["app_id"], "client_secret": M["app_secret"],
             "refresh_token": tok["refresh_token"]})
check(old.get("code") == 20073, "the old refresh token stops working")

# --- the long connection: lark's ws.Client -------------------------------------------------
ws_events = []
ws_handler = lark.EventDispatcherHandler.builder("", "") \
    .register_p2_vc_meeting_all_meeting_ended_v1(lambda d: ws_events.append(d.event.meeting.id)).build()
import lark_oapi.ws.client as ws_client  # noqa: E402

ws = ws_client.Client(M["app_id"], M["app_secret"], event_handler=ws_handler, domain=BASE,
                      log_level=lark.LogLevel.ERROR, auto_reconnect=False)
threading.Thread(target=ws.start, daemon=True).start()
wait_for(lambda: ws._conn is not None, "ws.Client connected")
m2 = sim("/_sim/meetings", {"owner_open_id": owner, "ready_after_s": 30, "bytes": 1000})
wait_for(lambda: m2["meeting_id"] in ws_events, "event received over the long connection")
wait_for(lambda: any(a["target"].startswith("ws:") and a["status"] == 200 and a["event_id"] == m2["event_id"]
                     for a in sim("/_sim/deliveries")["attempts"]), "ws.Client acknowledged with code 200")

stats = sim("/_sim/stats")
check(stats["calls"].get("GET /open-apis/drive/v1/files", 0) >= 4, "stats count calls per route template")
print("all lark-oapi checks passed", flush=True)
os._exit(0)
