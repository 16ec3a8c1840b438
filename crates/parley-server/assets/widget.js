/* Parley web widget and visitor tracker. Served by Parley at /widget.js; embed with
   <script src="{your Parley server}/widget.js" data-key="pk_..." async></script>
   Plain JavaScript, no dependencies, no third-party requests. The widget lives in a shadow root
   so the host page's CSS cannot reach it and its CSS cannot reach the page. Untrusted text is
   only ever set with textContent (the markdown renderer builds DOM nodes; nothing is parsed as HTML).
   API: window.Parley.track(name, data), .trigger(name, data), .open(), .close(). */
(function () {
  "use strict";
  if (window.Parley && window.Parley.loaded) return;
  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var KEY = script && script.getAttribute("data-key");
  var BASE = script ? new URL(script.src, location.href).origin : "";
  var API = BASE + "/widget/v1";
  var store = window.localStorage;

  /* ---------- small helpers ---------- */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function rid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function load(name) {
    try { return JSON.parse(store.getItem(name) || "null"); } catch (e) { return null; }
  }
  function save(name, v) {
    try { if (v == null) store.removeItem(name); else store.setItem(name, JSON.stringify(v)); } catch (e) { /* private mode */ }
  }
  /* A request to the widget API; `body` is sent as JSON, or as itself when it is a Blob (audio). */
  function call(method, path, body, headers, keepalive) {
    var raw = window.Blob && body instanceof Blob, h = { "content-type": raw ? body.type : "application/json" };
    for (var k in headers || {}) if (headers[k]) h[k] = headers[k];
    return fetch(API + path + (path.indexOf("?") < 0 ? "?" : "&") + "key=" + encodeURIComponent(KEY), {
      method: method, headers: h, body: raw ? body : body ? JSON.stringify(body) : undefined,
      credentials: "omit", keepalive: !!keepalive, mode: "cors"
    });
  }
  function json(res) {
    return res.json().then(function (b) {
      if (!res.ok) { var e = new Error((b.error && b.error.message) || res.statusText); e.code = b.error && b.error.code; e.status = res.status; throw e; }
      return b;
    });
  }

  /* ---------- sanitised markdown: **bold**, *italic*, `code`, [links](https://), lists, tables ---------- */
  function inline(parent, text) {
    var re = /(\*\*([^*]+)\*\*|\*([^*]+)\*|`([^`]+)`|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\))/g, last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[2]) parent.appendChild(el("strong", null, m[2]));
      else if (m[3]) parent.appendChild(el("em", null, m[3]));
      else if (m[4]) parent.appendChild(el("code", null, m[4]));
      else { var a = el("a", null, m[5]); a.href = m[6]; a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; parent.appendChild(a); }
      last = re.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }
  /* A GitHub-style table: a header row, a `|---|:--:|` delimiter row, then body rows. */
  function cells(line) {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map(function (c) { return c.trim(); });
  }
  function isTable(lines) {
    return lines.length >= 2 && /\|/.test(lines[0]) && /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/.test(lines[1]);
  }
  function table(lines) {
    var wrap = el("div", "tbl"), t = el("table"), head = el("thead"), body = el("tbody"), tr = el("tr");
    var align = cells(lines[1]).map(function (c) { return /^:-+:$/.test(c) ? "center" : /-:$/.test(c) ? "right" : ""; });
    var width = cells(lines[0]).length;
    cells(lines[0]).forEach(function (c, i) { var th = el("th"); if (align[i]) th.style.textAlign = align[i]; inline(th, c); tr.appendChild(th); });
    head.appendChild(tr); t.appendChild(head);
    lines.slice(2).forEach(function (l) {
      var row = el("tr"), cs = cells(l);
      for (var i = 0; i < width; i++) { var td = el("td"); if (align[i]) td.style.textAlign = align[i]; inline(td, cs[i] || ""); row.appendChild(td); }
      body.appendChild(row);
    });
    t.appendChild(body); wrap.appendChild(t);
    return wrap;
  }
  function markdown(text) {
    var root = el("div", "md");
    String(text).split(/\n{2,}/).forEach(function (block) {
      var lines = block.split("\n");
      if (isTable(lines)) root.appendChild(table(lines));
      else if (lines.every(function (l) { return /^\s*([-*]|\d+\.)\s+/.test(l); })) {
        var list = el(/^\s*\d/.test(lines[0]) ? "ol" : "ul");
        lines.forEach(function (l) { var li = el("li"); inline(li, l.replace(/^\s*([-*]|\d+\.)\s+/, "")); list.appendChild(li); });
        root.appendChild(list);
      } else {
        var p = el("p");
        lines.forEach(function (l, i) { if (i) p.appendChild(el("br")); inline(p, l); });
        root.appendChild(p);
      }
    });
    return root;
  }

  /* ---------- styles (a constructed stylesheet: allowed by strict CSP style-src) ---------- */
  var CSS = ":host{all:initial}*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
    ".root{position:fixed;bottom:20px;z-index:2147483000;font-size:14px;color:#1f2330;display:flex;flex-direction:column}.root.right{right:20px;align-items:flex-end}.root.left{left:20px;align-items:flex-start}" +
    ".root.inline{position:static}" +
    ".launcher{width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;background:var(--c);color:var(--t);box-shadow:0 6px 20px rgba(0,0,0,.2);display:flex;align-items:center;justify-content:center;padding:0}.launcher svg{width:26px;height:26px}" +
    ".panel{width:360px;max-width:calc(100vw - 40px);height:520px;max-height:calc(100vh - 100px);background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.22);display:flex;flex-direction:column;overflow:hidden;margin-bottom:12px}" +
    ".inline .panel{margin:0;max-height:none;width:100%;max-width:100%}" +
    ".head{background:var(--c);color:var(--t);padding:12px 14px;display:flex;align-items:center;gap:8px}.head h2{font-size:15px;margin:0;flex:1;min-width:0;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}" +
    ".head button{flex:none;background:transparent;border:0;color:inherit;border-radius:6px;width:30px;height:30px;padding:0;cursor:pointer;opacity:.85;display:flex;align-items:center;justify-content:center}.head button:hover,.head button:focus-visible{opacity:1;background:rgba(255,255,255,.18)}.head svg{width:18px;height:18px}" +
    ".msgs{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f7f7fa}" +
    ".b{max-width:85%;padding:8px 11px;border-radius:12px;line-height:1.45;word-wrap:break-word;white-space:normal}" +
    ".b.user{align-self:flex-end;background:var(--c);color:var(--t);border-bottom-right-radius:4px}" +
    ".b.assistant,.b.agent{align-self:flex-start;background:#fff;border:1px solid #e4e4ea;border-bottom-left-radius:4px}" +
    ".b.pending{opacity:.6}.b p{margin:0 0 6px}.b p:last-child{margin:0}.b ul,.b ol{margin:0 0 6px;padding-left:18px}.b ul:last-child,.b ol:last-child{margin-bottom:0}.b code{background:rgba(0,0,0,.07);padding:0 3px;border-radius:3px}.b a{color:inherit}" +
    ".tbl{overflow-x:auto;margin:0 0 6px}.tbl:last-child{margin:0}.b table{border-collapse:collapse;font-size:13px}.b th,.b td{border:1px solid #e4e4ea;padding:3px 6px;text-align:left;vertical-align:top}.b th{background:#f3f3f7;font-weight:600}" +
    ".typing{align-self:flex-start;display:flex;gap:4px;padding:10px 12px;background:#fff;border:1px solid #e4e4ea;border-radius:12px}" +
    ".typing i{width:6px;height:6px;border-radius:50%;background:#999;animation:p 1s infinite}.typing i:nth-child(2){animation-delay:.15s}.typing i:nth-child(3){animation-delay:.3s}" +
    "@keyframes p{0%,100%{opacity:.3}50%{opacity:1}}" +
    ".compose{display:flex;gap:6px;padding:10px;border-top:1px solid #e4e4ea;background:#fff}" +
    "textarea,input,select{font:inherit;border:1px solid #cfd0d8;border-radius:8px;padding:8px;width:100%;color:#1f2330;background:#fff}" +
    ".compose textarea{resize:none;height:40px}" +
    ".rec{min-width:44px}.rec:only-child{flex:1;padding:11px}.rec.on{background:#b42318;color:#fff}.mic{margin:0;padding:6px 10px;background:#fff;border-top:1px solid #e4e4ea}" +
    ".btn{background:var(--c);color:var(--t);border:0;border-radius:8px;padding:8px 12px;cursor:pointer;font-weight:600;white-space:nowrap}" +
    "form.pre,.rate{padding:14px;display:flex;flex-direction:column;gap:10px;overflow-y:auto;flex:1}" +
    "label{display:flex;flex-direction:column;gap:4px;font-size:13px;font-weight:600}.err{color:#b42318;font-size:12px;font-weight:400}" +
    ".stars{display:flex;gap:4px}.stars button{font-size:28px;background:none;border:0;cursor:pointer;color:#ccc;padding:0}.stars button.on{color:#f5a524}" +
    ".note{color:#666;font-size:13px;text-align:center}" +
    ".callb:only-child{flex:1;padding:11px}.call{display:flex;align-items:center;gap:10px;padding:10px;border-top:1px solid #e4e4ea;background:#fff}" +
    ".call-state{flex:1;font-weight:600}.level{width:8px;height:24px;border-radius:4px;background:var(--c);transform-origin:bottom;transform:scaleY(.08);transition:transform 60ms linear}" +
    ".end-call{background:#b42318;color:#fff}";

  /* ---------- icons: inline SVG paths (no emoji font needed, no markup parsed) ---------- */
  var ICONS = {
    chat: "M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6A.5.5 0 0 1 5 19.2V16h0A2.5 2.5 0 0 1 4 13.5z",
    close: "M6 6l12 12M18 6L6 18",
    plus: "M12 5v14M5 12h14",
    end: "M7 7h10v10H7z"
  };
  function icon(name) {
    var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg"), path = document.createElementNS(ns, "path");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("aria-hidden", "true"); svg.setAttribute("focusable", "false");
    path.setAttribute("d", ICONS[name]);
    if (name === "chat") path.setAttribute("fill", "currentColor");
    else { path.setAttribute("fill", "none"); path.setAttribute("stroke", "currentColor"); path.setAttribute("stroke-width", "2"); path.setAttribute("stroke-linecap", "round"); path.setAttribute("stroke-linejoin", "round"); }
    svg.appendChild(path);
    return svg;
  }
  /* A header button: an icon, its label for screen readers and as a tooltip. */
  function iconButton(cls, name, label) {
    var b = el("button", cls); b.type = "button";
    b.setAttribute("aria-label", label); b.title = label;
    b.appendChild(icon(name));
    return b;
  }

  /* ---------- the widget ---------- */
  function Widget(cfg, mount, preview) {
    var w = this;
    w.cfg = cfg; w.preview = preview;
    w.s = cfg.strings || {};
    w.skey = "parley:" + KEY;
    w.state = preview ? {} : (load(w.skey) || {});
    w.msgs = [];
    var host = mount || el("div");
    if (!mount) { host.id = "parley-widget"; document.body.appendChild(host); }
    w.shadow = host.shadowRoot || host.attachShadow({ mode: "open" });
    try { var sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); w.shadow.adoptedStyleSheets = [sheet]; }
    catch (e) { w.shadow.appendChild(el("style", null, CSS)); }
    w.root = el("div", "root " + (preview ? "inline" : cfg.position === "bottom_left" ? "left" : "right"));
    w.root.style.setProperty("--c", cfg.color || "#6d28d9");
    w.root.style.setProperty("--t", cfg.text_color || "#fff");
    while (w.shadow.firstChild) w.shadow.removeChild(w.shadow.firstChild);
    w.shadow.appendChild(w.root);
    w.open = preview || !!w.state.open;
    w.draw();
    if (!preview && w.state.token) w.sync();
    if (!preview) { setInterval(function () { w.idleCheck(); }, 20000); w.watch(); w.tick(); }
  }
  Widget.prototype.persist = function () { if (!this.preview) save(this.skey, this.state); };
  Widget.prototype.draw = function () {
    var w = this, r = w.root;
    while (r.firstChild) r.removeChild(r.firstChild);
    if (w.open) {
      var panel = el("div", "panel"), head = el("div", "head");
      panel.setAttribute("role", "dialog");
      head.appendChild(el("h2", null, w.cfg.title));
      if (w.state.token && !w.state.closed) {
        var end = iconButton("end", "end", w.s.end_conversation); end.onclick = function () { w.close("visitor_closed"); }; head.appendChild(end);
      }
      var fresh = iconButton("new", "plus", w.s.new_conversation); fresh.onclick = function () { w.reset(); }; head.appendChild(fresh);
      if (!w.preview) { var x = iconButton("min", "close", "Close"); x.onclick = function () { w.toggle(false); }; head.appendChild(x); }
      panel.appendChild(head);
      var pre = w.cfg.pre_chat || [];
      if (!w.state.token && pre.length) panel.appendChild(w.preForm(pre));
      else if (w.state.closed) panel.appendChild(w.rating());
      else {
        panel.appendChild(w.list());
        if (w.micOff && w.voice()) panel.appendChild(el("p", "err mic", w.s.mic_denied));
        panel.appendChild(w.callOn ? w.callBar() : w.composer());
      }
      r.appendChild(panel);
    }
    if (!w.preview) {
      var l = el("button", "launcher"); l.type = "button"; l.appendChild(icon(w.open ? "close" : "chat"));
      l.setAttribute("aria-expanded", w.open ? "true" : "false");
      l.setAttribute("aria-label", w.cfg.title);
      l.onclick = function () { w.toggle(!w.open); };
      r.appendChild(l);
    }
  };
  Widget.prototype.toggle = function (open) { this.open = this.state.open = open; this.persist(); this.draw(); if (this.tick) this.tick(); };
  Widget.prototype.preForm = function (fields) {
    var w = this, f = el("form", "pre");
    f.noValidate = true;
    if (w.cfg.greeting) f.appendChild(el("p", "note", w.cfg.greeting));
    fields.forEach(function (fd) {
      var lab = el("label", null, fd.label + (fd.required ? " *" : "")), input;
      if (fd.kind === "dropdown") {
        input = el("select"); input.appendChild(el("option", null, ""));
        (fd.options || []).forEach(function (o) { var op = el("option", null, o); op.value = o; input.appendChild(op); });
      } else {
        input = el("input"); input.type = fd.kind === "email" ? "email" : fd.kind === "phone" ? "tel" : "text";
      }
      input.name = fd.key; input.required = !!fd.required;
      var err = el("span", "err");
      input.oninput = input.onchange = function () { err.textContent = ""; };
      lab.appendChild(input); lab.appendChild(err);
      f.appendChild(lab);
    });
    var go = el("button", "btn", w.s.start); go.type = "submit"; f.appendChild(go);
    f.onsubmit = function (ev) {
      ev.preventDefault();
      if (w.preview) return;
      var values = {}, ok = true;
      fields.forEach(function (fd) {
        var input = f.elements[fd.key], v = input.value.trim(), err = input.parentNode.querySelector(".err"), msg = "";
        if (!v && fd.required) msg = fd.label + " is required";
        else if (v && fd.kind === "email" && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v)) msg = fd.label + " must be an e-mail address";
        else if (v && fd.kind === "phone" && !/^\+?[\d\s().-]{5,}$/.test(v)) msg = fd.label + " must be a phone number";
        err.textContent = msg; if (msg) ok = false;
        if (v) values[fd.key] = v;
      });
      if (!ok) return;
      go.disabled = true;
      w.start(values).then(function () { w.draw(); }, function (e) { go.disabled = false; w.toast(f, e); });
    };
    return f;
  };
  Widget.prototype.toast = function (parent, e) { parent.appendChild(el("p", "err", e.message || String(e))); };
  Widget.prototype.start = function (values) {
    var w = this;
    return call("POST", "/conversations", { pre_chat: values || {}, tracker: tracker.token || undefined })
      .then(json).then(function (b) {
        w.state = { token: b.visitor_token, conversation: b.conversation_id, open: true, last: Date.now() };
        w.msgs = []; w.persist(); if (w.tick) w.tick();
      });
  };
  Widget.prototype.list = function () {
    var w = this, box = el("div", "msgs");
    w.box = box;
    if (w.cfg.greeting) box.appendChild(w.bubble({ role: "assistant", content: w.cfg.greeting }));
    if (w.preview) {
      box.appendChild(w.bubble({ role: "user", content: "Hi! Do you ship to Austria?" }));
      box.appendChild(w.bubble({ role: "assistant", content: "Yes — **free shipping** from €50.\n\n- 2-4 days\n- tracked" }));
    }
    w.msgs.forEach(function (m) { box.appendChild(w.bubble(m)); });
    if (w.streaming != null) {
      if (w.streaming) { w.live = w.bubble({ role: "assistant", content: w.streaming }); box.appendChild(w.live); }
      else box.appendChild(w.typing());
    }
    setTimeout(function () { box.scrollTop = box.scrollHeight; }, 0);
    return box;
  };
  Widget.prototype.typing = function () { var t = el("div", "typing"); t.setAttribute("aria-label", "typing"); t.appendChild(el("i")); t.appendChild(el("i")); t.appendChild(el("i")); return t; };
  Widget.prototype.bubble = function (m) {
    var b = el("div", "b " + m.role + (m.pending ? " pending" : ""));
    if (m.role === "user") b.textContent = m.content; else b.appendChild(markdown(m.content));
    if (m.id) b.setAttribute("data-id", m.id);
    return b;
  };
  /* Whether the mode offers voice messages. */
  Widget.prototype.voice = function () { return /voice/.test(this.cfg.mode || ""); };
  Widget.prototype.composer = function () {
    var w = this, c = el("form", "compose");
    var ta = el("textarea"); ta.placeholder = w.s.placeholder; ta.setAttribute("aria-label", w.s.placeholder);
    var send = el("button", "btn send", w.s.send); send.type = "submit";
    var canRec = window.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
    if (w.voice() && !canRec && !w.preview) w.micOff = true;
    var rec = w.voice() && !w.micOff;
    // Voice only hides the text input, unless recordings cannot be transcribed (the assistant
    // could not understand them) or there is no microphone.
    // With a call on offer, voice only is the call; voice and chat gets a call button.
    var callable = w.voice() && w.cfg.call && !w.micOff && (w.preview || w.canCall());
    if (callable && w.cfg.mode === "voice") { c.appendChild(w.callButton()); return c; }
    if (!rec || w.cfg.mode !== "voice" || w.cfg.voice_transcribed === false) { c.appendChild(ta); c.appendChild(send); }
    if (rec) c.appendChild(w.recButton());
    if (callable) c.appendChild(w.callButton());
    ta.onkeydown = function (e) { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); c.requestSubmit ? c.requestSubmit() : c.onsubmit(e); } };
    c.onsubmit = function (e) {
      e.preventDefault();
      var text = ta.value.trim();
      if (!text || w.preview) return;
      ta.value = "";
      w.send(text);
    };
    setTimeout(function () { if (!w.preview && ta.parentNode) ta.focus(); }, 0);
    return c;
  };
  /* The record button: tap to start and tap to stop, or hold while speaking; shows the time. */
  Widget.prototype.recButton = function () {
    var w = this, b = el("button", "btn rec"), held = 0;
    b.type = "button"; b.title = w.s.record; b.setAttribute("aria-label", w.s.record);
    w.recBtn = b; w.recLabel();
    b.onpointerdown = function () { if (!w.rec) { held = Date.now(); w.record(); } };
    b.onpointerup = function () { if (held && Date.now() - held > 600) w.stopRec(); };
    b.onclick = function () { if (held) { held = 0; return; } if (w.rec) w.stopRec(); else w.record(); };
    return b;
  };
  Widget.prototype.recLabel = function () {
    var b = this.recBtn, r = this.rec;
    if (!b) return;
    var s = r ? Math.floor((Date.now() - r.t0) / 1000) : 0;
    b.className = "btn rec" + (r ? " on" : "");
    b.textContent = r ? "■ " + Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2) : "🎤";
    b.setAttribute("aria-pressed", r ? "true" : "false");
  };
  Widget.prototype.record = function () {
    var w = this, r;
    if (w.rec || w.preview) return;
    r = w.rec = { t0: Date.now(), chunks: [], size: 0 };
    w.recLabel();
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      r.stream = stream;
      if (w.rec !== r) return stream.getTracks().forEach(function (t) { t.stop(); });
      var type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"].filter(function (t) {
        return MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(t);
      })[0];
      var mr = r.mr = new MediaRecorder(stream, type ? { mimeType: type } : undefined), max = w.cfg.max_voice_bytes || 2097152;
      mr.ondataavailable = function (e) {
        if (e.data && e.data.size) { r.chunks.push(e.data); r.size += e.data.size; }
        if (r.size > max * 0.9 && w.rec === r) w.stopRec();
      };
      mr.onstop = function () {
        stream.getTracks().forEach(function (t) { t.stop(); });
        var blob = new Blob(r.chunks, { type: (mr.mimeType || type || "audio/webm").split(";")[0] });
        if (blob.size && !r.cancel) w.send("🎤 …", null, 0, blob);
      };
      r.t0 = Date.now();
      mr.start(1000);
      r.timer = setInterval(function () { w.recLabel(); if (Date.now() - r.t0 > 300000) w.stopRec(); }, 500);
    }, function () {
      // No permission, no device: say so and offer text.
      if (w.rec === r) w.rec = null;
      w.micOff = true; w.draw();
    });
  };
  Widget.prototype.stopRec = function () {
    var r = this.rec;
    if (!r) return;
    this.rec = null; clearInterval(r.timer);
    if (r.mr && r.mr.state !== "inactive") r.mr.stop();
    else if (r.stream) r.stream.getTracks().forEach(function (t) { t.stop(); });
    this.recLabel();
  };
  Widget.prototype.merge = function (m) {
    var w = this, i;
    for (i = 0; i < w.msgs.length; i++) {
      if ((m.id && w.msgs[i].id === m.id) || (m.client_id && w.msgs[i].client_id === m.client_id)) { w.msgs[i] = m; return; }
    }
    w.msgs.push(m);
  };
  /* Sends a text, or a recording (`audio`, a Blob, with `text` shown until the server's
     message replaces it); the answer streams back. */
  Widget.prototype.send = function (text, clientId, attempt, audio) {
    var w = this, cid = clientId || rid().replace(/-/g, "");
    if (!w.state.token) {
      return w.start({}).then(function () { w.send(text, cid, 0, audio); }, function (e) { w.toast(w.box, e); });
    }
    if (!attempt) { w.merge({ client_id: cid, role: "user", content: text, pending: true }); }
    w.state.last = Date.now(); w.persist();
    w.streaming = ""; w.draw();
    var h = { "x-parley-visitor": w.state.token };
    (audio ? call("POST", "/voice?client_id=" + cid, audio, h) : call("POST", "/messages", { client_id: cid, content: text }, h)).then(function (res) {
      if (!res.ok) return json(res);
      var reader = res.body.getReader(), dec = new TextDecoder(), buf = "";
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) return;
          buf += dec.decode(r.value, { stream: true });
          var parts = buf.split("\n\n"); buf = parts.pop();
          parts.forEach(function (p) {
            var ev = "", data = "";
            p.split("\n").forEach(function (l) { if (l.indexOf("event: ") === 0) ev = l.slice(7); else if (l.indexOf("data: ") === 0) data += l.slice(6); });
            var d = data ? JSON.parse(data) : {};
            if (ev === "message") { w.merge(d); if (d.role !== "user") w.streaming = null; w.draw(); }
            else if (ev === "delta") { w.streaming = (w.streaming || "") + d.text; if (w.live) { w.live.textContent = ""; w.live.appendChild(markdown(w.streaming)); w.box.scrollTop = w.box.scrollHeight; } else w.draw(); }
            else if (ev === "error") { w.toast(w.box, new Error(d.message)); }
          });
          return pump();
        });
      }
      return pump();
    }).then(function () {
      w.streaming = null; w.live = null; return w.sync().then(function () { w.poll(10); });
    }, function (e) {
      w.streaming = null; w.live = null;
      if (e.code === "conversation_closed") { w.state.closed = true; w.persist(); w.draw(); return; }
      if (e.status && e.status < 500 && e.status !== 429) { w.draw(); w.toast(w.box, e); return; }
      // A dropped connection: resend with the same client id (never stored twice), then catch up.
      if ((attempt || 0) < 3) setTimeout(function () { w.send(text, cid, (attempt || 0) + 1, audio); }, 1000 * ((attempt || 0) + 1));
      else w.sync();
    });
  };
  Widget.prototype.sync = function (quiet) {
    var w = this;
    return call("GET", "/messages", null, { "x-parley-visitor": w.state.token }).then(json).then(function (b) { w.apply(b, quiet); }, function (e) {
      if (e.code === "invalid_visitor_token" || e.status === 404) { w.state = { open: w.open }; w.persist(); w.draw(); }
    });
  };
  /* Takes the server's messages `b.messages` (the whole transcript, or only some when `some`)
     and status. `quiet`: only when something changed and no answer is streaming, keeping what
     the visitor is typing (the live look for team replies, see `watch`). */
  Widget.prototype.apply = function (b, quiet, some) {
    var w = this, sig = function () { return JSON.stringify(w.msgs.map(function (m) { return [m.id, m.content]; })) + w.state.closed; };
    var before = sig(), probe = w.msgs.slice(), closed = w.state.closed, rated = w.state.rated;
    if (!some) w.msgs = w.msgs.filter(function (m) { return m.pending && !b.messages.some(function (n) { return n.client_id === m.client_id; }); });
    (b.messages || []).forEach(function (m) { w.merge(m); });
    w.msgs.sort(function (a, c) { return (a.pending ? 1 : 0) - (c.pending ? 1 : 0); });
    if (b.status && b.status !== "active") { w.state.closed = true; w.state.rated = b.rated; }
    if (quiet && (sig() === before || w.streaming != null)) { w.msgs = probe; w.state.closed = closed; w.state.rated = rated; return; }
    var ta = w.root.querySelector(".compose textarea"), draft = ta ? ta.value : "", focused = ta && w.shadow.activeElement === ta;
    w.persist(); if (w.streaming == null) w.draw();
    if (quiet && (ta = w.root.querySelector(".compose textarea"))) { ta.value = draft; if (focused) ta.focus(); }
  };
  /* A team member's reply (issue 14) comes without a request of the visitor's: while the chat
     is open, the live stream (`/stream`, SSE) brings it; without EventSource, or after the
     stream failed 4 times, look for new messages every 3 seconds while the page is visible. */
  Widget.prototype.watch = function () {
    var w = this;
    w.fails = 0;
    w.tick = function () {
      var up = w.open && w.state.token && !w.state.closed, es = w.es;
      if (es && (!up || es.token !== w.state.token)) { es.close(); w.es = es = null; }
      if (up && !es && window.EventSource && w.fails < 4) w.listen();
      else if (up && !es && w.streaming == null && document.visibilityState === "visible") w.sync(true);
    };
    setInterval(w.tick, 3000);
  };
  Widget.prototype.listen = function () {
    var w = this, es = w.es = new EventSource(API + "/stream?key=" + encodeURIComponent(KEY) + "&visitor=" + encodeURIComponent(w.state.token));
    es.token = w.state.token;
    function on(name, f) { es.addEventListener(name, function (e) { w.fails = 0; f(JSON.parse(e.data)); }); }
    on("snapshot", function (b) { w.apply(b, true); });
    on("message", function (m) { w.apply({ messages: [m] }, true, true); });
    on("status", function (b) { w.apply(b, true, true); if (w.state.closed) w.tick(); });
    es.onerror = function () { if (++w.fails > 3 || es.readyState === 2) { es.close(); if (w.es === es) w.es = null; } };
  };
  /* After a retried send the answer may still be on its way: look again until it is there. */
  Widget.prototype.poll = function (tries) {
    var w = this, last = w.msgs[w.msgs.length - 1];
    if (!tries || !last || last.role !== "user" || w.state.closed || w.streaming != null) return;
    setTimeout(function () { w.sync().then(function () { w.poll(tries - 1); }); }, 1500);
  };
  Widget.prototype.idleCheck = function () {
    var w = this, mins = w.cfg.idle_timeout_minutes;
    if (mins && w.state.token && !w.state.closed && w.state.last && Date.now() - w.state.last > mins * 60000) w.close("timeout");
  };
  Widget.prototype.close = function (reason) {
    var w = this;
    w.endCall();
    return call("POST", "/close", { reason: reason }, { "x-parley-visitor": w.state.token }).then(json).then(function () {
      w.state.closed = true; w.persist(); w.draw();
    }, function (e) { w.toast(w.root, e); });
  };
  Widget.prototype.rating = function () {
    var w = this, box = el("form", "rate"), score = 0;
    if (w.state.rated) {
      box.appendChild(el("p", "note thanks", w.s.thanks));
    } else {
      box.appendChild(el("p", "note", w.s.rate_prompt));
      var stars = el("div", "stars"), buttons = [];
      stars.setAttribute("role", "radiogroup");
      [1, 2, 3, 4, 5].forEach(function (n) {
        var b = el("button", null, "★"); b.type = "button"; b.setAttribute("aria-label", n + " / 5"); b.setAttribute("data-score", n);
        b.onclick = function () { score = n; buttons.forEach(function (x, i) { x.className = i < n ? "on" : ""; }); };
        buttons.push(b); stars.appendChild(b);
      });
      box.appendChild(stars);
      var ta = el("textarea"); ta.placeholder = w.s.comment_placeholder; ta.name = "comment"; box.appendChild(ta);
      var go = el("button", "btn", w.s.send); go.type = "submit"; box.appendChild(go);
      box.onsubmit = function (e) {
        e.preventDefault();
        if (!score || w.preview) return;
        call("POST", "/rating", { score: score, comment: ta.value }, { "x-parley-visitor": w.state.token }).then(json).then(function () {
          w.state.rated = true; w.persist(); w.draw();
        }, function (err) { w.toast(box, err); });
      };
    }
    var again = el("button", "btn again", w.s.new_conversation); again.type = "button"; again.onclick = function () { w.reset(); };
    box.appendChild(again);
    return box;
  };
  Widget.prototype.reset = function () { this.endCall(); if (this.rec) { this.rec.cancel = true; this.stopRec(); } this.state = { open: true }; this.msgs = []; this.streaming = null; this.persist(); this.draw(); };

  /* ---------- the voice call (issue 15) ----------
     The microphone feeds a ScriptProcessor; an energy detector (RMS of 512-sample frames
     against a threshold of max(0.015, 3 x the noise floor)) finds the visitor's utterances:
     speech starts after two loud frames (with ~300 ms kept from before), and ends after the
     widget's `call_end_silence_ms` of quiet (or 15 s). Each utterance goes to POST /call as a
     16-bit PCM WAV; the turn's progress streams back (captions of both sides), and the spoken
     answer plays from its speech_url as it downloads. Speech from the visitor while an answer
     plays stops it (barge-in). */
  Widget.prototype.canCall = function () {
    return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && (window.AudioContext || window.webkitAudioContext));
  };
  Widget.prototype.callButton = function () {
    var w = this, b = el("button", "btn callb", w.cfg.mode === "voice" ? "📞 " + w.s.call : "📞");
    b.type = "button"; b.title = w.s.call; b.setAttribute("aria-label", w.s.call);
    b.onclick = function () { w.startCall(); };
    return b;
  };
  Widget.prototype.callBar = function () {
    var w = this, bar = el("div", "call"), end = el("button", "btn end-call", w.s.end_call);
    bar.setAttribute("role", "status"); bar.setAttribute("aria-live", "polite");
    w.level = el("i", "level"); bar.appendChild(w.level);
    bar.appendChild(el("span", "call-state"));
    end.type = "button"; end.onclick = function () { w.endCall(); };
    bar.appendChild(end);
    setTimeout(function () { w.callStatus(); }, 0);
    return bar;
  };
  Widget.prototype.callStatus = function () {
    var k = this.callOn, bar = this.root.querySelector(".call");
    if (!k || !bar) return;
    bar.setAttribute("data-state", k.status);
    bar.querySelector(".call-state").textContent = k.status === "speaking" ? this.s.speaking : k.status === "thinking" ? "…" : this.s.listening;
  };
  /* The one <audio> element of spoken answers: outside the redrawn part, so it keeps playing. */
  Widget.prototype.speechEl = function () {
    var w = this, a = w.audioEl;
    if (a) return a;
    a = w.audioEl = el("audio", "speech");
    a.crossOrigin = "anonymous"; a.preload = "auto";
    a.addEventListener("playing", function () { a.setAttribute("data-played", String(+(a.getAttribute("data-played") || 0) + 1)); });
    a.addEventListener("ended", function () { var k = w.callOn; if (k && k.status === "speaking") { k.status = "listening"; w.callStatus(); } });
    w.shadow.appendChild(a);
    return a;
  };
  Widget.prototype.startCall = function () {
    var w = this;
    if (w.callOn || w.preview) return;
    if (!w.state.token) return w.start({}).then(function () { w.startCall(); }, function (e) { w.toast(w.box, e); });
    var k = w.callOn = { status: "listening", pre: [], utter: null, loud: 0, quiet: 0, voiced: 0, floor: 0, seq: 0, bargeIns: 0 };
    w.speechEl();
    w.draw();
    navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false } }).then(function (stream) {
      if (w.callOn !== k) return stream.getTracks().forEach(function (t) { t.stop(); });
      k.stream = stream;
      var AC = window.AudioContext || window.webkitAudioContext, ctx, src;
      // 16 kHz keeps the uploads small; a browser that cannot resample the microphone to it
      // gets its own rate.
      try { ctx = new AC({ sampleRate: 16000 }); src = ctx.createMediaStreamSource(stream); }
      catch (e) { if (ctx) ctx.close(); ctx = new AC(); src = ctx.createMediaStreamSource(stream); }
      var proc = ctx.createScriptProcessor(512, 1, 1), mute = ctx.createGain();
      mute.gain.value = 0;
      src.connect(proc); proc.connect(mute); mute.connect(ctx.destination);
      k.ctx = ctx; k.nodes = [src, proc, mute];
      proc.onaudioprocess = function (e) { if (w.callOn === k) w.vad(k, new Float32Array(e.inputBuffer.getChannelData(0)), ctx.sampleRate); };
      if (ctx.state === "suspended") ctx.resume();
    }, function () {
      if (w.callOn !== k) return;
      w.callOn = null; w.micOff = true; w.draw();
    });
  };
  Widget.prototype.endCall = function () {
    var k = this.callOn;
    if (!k) return;
    this.callOn = null;
    if (k.stream) k.stream.getTracks().forEach(function (t) { t.stop(); });
    if (k.ctx) k.ctx.close();
    if (this.audioEl && !this.audioEl.paused) this.audioEl.pause();
    this.draw();
  };
  /* One frame of the microphone: the voice-activity detector (see above). */
  Widget.prototype.vad = function (k, f, rate) {
    var w = this, sum = 0, i;
    for (i = 0; i < f.length; i++) sum += f[i] * f[i];
    var rms = Math.sqrt(sum / f.length), ms = f.length / rate * 1000, loud = rms >= Math.max(0.015, k.floor * 3);
    if (w.level) w.level.style.transform = "scaleY(" + Math.max(0.08, Math.min(1, rms * 8)).toFixed(2) + ")";
    if (!k.utter) {
      k.pre.push(f);
      if (k.pre.length * ms > 300) k.pre.shift();
      if (!loud) { k.loud = 0; k.floor = k.floor * 0.95 + rms * 0.05; return; }
      if (++k.loud < 2) return;
      k.utter = k.pre; k.pre = []; k.quiet = 0; k.voiced = k.loud;
      w.bargeIn(k);
      return;
    }
    k.utter.push(f);
    if (loud) { k.quiet = 0; k.voiced++; } else k.quiet++;
    if (k.quiet * ms >= (w.cfg.call_end_silence_ms || 700) || k.utter.length * ms >= 15000) {
      var u = k.utter;
      k.utter = null; k.loud = 0; k.quiet = 0;
      if (k.voiced * ms >= 200) w.sendTurn(k, wav(u, rate));
    }
  };
  /* The visitor started speaking: an answer being played stops. */
  Widget.prototype.bargeIn = function (k) {
    var a = this.audioEl;
    if (a && !a.paused && !a.ended) {
      a.pause(); k.bargeIns++;
      a.setAttribute("data-interrupted", String(k.bargeIns));
    }
    if (k.status === "speaking") { k.status = "listening"; this.callStatus(); }
  };
  /* 16-bit mono PCM WAV (RIFF) of float frames at `rate` Hz. */
  function wav(frames, rate) {
    var n = 0, o = 44;
    frames.forEach(function (f) { n += f.length; });
    var buf = new ArrayBuffer(44 + n * 2), v = new DataView(buf);
    function str(at, t) { for (var i = 0; i < t.length; i++) v.setUint8(at + i, t.charCodeAt(i)); }
    str(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); str(8, "WAVE"); str(12, "fmt ");
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    str(36, "data"); v.setUint32(40, n * 2, true);
    frames.forEach(function (f) {
      for (var i = 0; i < f.length; i++, o += 2) { var x = Math.max(-1, Math.min(1, f[i])); v.setInt16(o, x < 0 ? x * 32768 : x * 32767, true); }
    });
    return new Blob([buf], { type: "audio/wav" });
  }
  Widget.prototype.sendTurn = function (k, blob) {
    var w = this, turn = { cid: rid().replace(/-/g, ""), n: ++k.seq };
    k.latest = turn.n;
    if (k.status !== "speaking") { k.status = "thinking"; w.callStatus(); }
    w.merge({ client_id: turn.cid, role: "user", content: "🎤 …", pending: true });
    w.state.last = Date.now(); w.persist(); w.draw();
    w.followTurn(k, blob, turn, 0);
  };
  /* Sends the utterance (again, after a dropped connection: the same client id is never stored
     twice) and follows its progress. */
  Widget.prototype.followTurn = function (k, blob, turn, attempt) {
    var w = this, last = null;
    call("POST", "/call?client_id=" + turn.cid, blob, { "x-parley-visitor": w.state.token }).then(function (res) {
      if (!res.ok) return json(res);
      var reader = res.body.getReader(), dec = new TextDecoder(), buf = "";
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) return;
          buf += dec.decode(r.value, { stream: true });
          var parts = buf.split("\n\n"); buf = parts.pop();
          parts.forEach(function (p) {
            var ev = "", data = "";
            p.split("\n").forEach(function (l) { if (l.indexOf("event: ") === 0) ev = l.slice(7); else if (l.indexOf("data: ") === 0) data += l.slice(6); });
            if (ev === "turn") { last = JSON.parse(data); w.showTurn(k, turn, last); }
          });
          return pump();
        });
      }
      return pump();
    }).then(function () {
      if (last && !/^(done|unanswered)$/.test(last.state)) w.pollTurn(k, turn, last.turn, 20);
    }, function (e) {
      if (e.code === "conversation_closed") { w.endCall(); w.state.closed = true; w.persist(); w.draw(); return; }
      if (e.status && e.status < 500 && e.status !== 429) { w.toast(w.box, e); return; }
      if (attempt < 3 && w.callOn === k) setTimeout(function () { w.followTurn(k, blob, turn, attempt + 1); }, 1000 * (attempt + 1));
    });
  };
  Widget.prototype.pollTurn = function (k, turn, id, tries) {
    var w = this;
    if (!tries || w.callOn !== k) return;
    setTimeout(function () {
      call("GET", "/call?turn=" + encodeURIComponent(id), null, { "x-parley-visitor": w.state.token }).then(json).then(function (d) {
        w.showTurn(k, turn, d);
        if (!/^(done|unanswered)$/.test(d.state)) w.pollTurn(k, turn, id, tries - 1);
      }, function () { w.pollTurn(k, turn, id, tries - 1); });
    }, 1500);
  };
  /* Captions of both sides; the answer is spoken when it is the latest turn's. */
  Widget.prototype.showTurn = function (k, turn, d) {
    var w = this;
    if (d.caption) w.merge(d.caption);
    if (d.answer) w.merge(d.answer);
    w.draw();
    if (w.callOn !== k || k.latest !== turn.n) return;
    if (d.state === "done" && d.speech_url && !turn.spoken) {
      turn.spoken = true;
      var a = w.speechEl();
      a.src = BASE + d.speech_url;
      k.status = "speaking"; w.callStatus();
      var p = a.play();
      if (p && p.catch) p.catch(function () { if (k.status === "speaking") { k.status = "listening"; w.callStatus(); } });
    } else if (/^(done|unanswered)$/.test(d.state) && k.status === "thinking") { k.status = "listening"; w.callStatus(); }
  };

  /* ---------- the tracker ---------- */
  var tracker = { token: null, queue: [], timer: null };
  var SENSITIVE = /pass|pwd|secret|card|cc-|cc_|ccnum|cvc|cvv|csc|iban|expir|token|ssn|^pin$|^pw$/i;
  function trackerStart(cfg) {
    var dnt = navigator.doNotTrack === "1" || window.doNotTrack === "1" || navigator.globalPrivacyControl === true;
    if (!cfg.tracking || (cfg.respect_dnt && dnt)) return;
    var tkey = "parley:t:" + KEY, saved = load(tkey);
    var resume = saved && Date.now() - saved.last < 30 * 60000 ? saved.token : null;
    var visit = load("parley:" + KEY) || {};
    return call("POST", "/track/session", { tracker: resume || undefined, landing_page: location.href, referrer: document.referrer, visitor: visit.token || undefined })
      .then(json).then(function (b) {
        if (!b.recording) return;
        tracker.token = b.tracker;
        save(tkey, { token: b.tracker, last: Date.now() });
        var pv = { id: rid(), kind: "pageview", name: document.title, url: location.href }, shown = Date.now(), spent = 0, depth = 0;
        function measure() {
          var d = document.documentElement, h = Math.max(d.scrollHeight - window.innerHeight, 1);
          depth = Math.max(depth, Math.min(100, Math.round((window.scrollY / h) * 100)));
          if (d.scrollHeight <= window.innerHeight) depth = 100;
        }
        function update(final) {
          measure();
          var now = Date.now();
          if (shown) { spent += now - shown; shown = document.visibilityState === "visible" ? now : 0; }
          pv.time_spent_ms = spent; pv.scroll_depth = depth;
          push(pv, final);
          save(tkey, { token: tracker.token, last: now });
        }
        measure(); push(pv);
        window.addEventListener("scroll", measure, { passive: true });
        document.addEventListener("visibilitychange", function () {
          if (document.visibilityState === "hidden") update(true); else shown = Date.now();
        });
        window.addEventListener("pagehide", function () { update(true); });
        setInterval(function () { if (document.visibilityState === "visible") update(false); }, 15000);
        document.addEventListener("click", function (e) {
          var t = e.target && e.target.closest && e.target.closest("[data-parley-event]");
          if (t) track("event", t.getAttribute("data-parley-event"), { text: (t.textContent || "").trim().slice(0, 100) });
        }, true);
        document.addEventListener("submit", function (e) {
          var f = e.target, name = f.getAttribute("data-parley-trigger");
          if (name) track("trigger", name, formData(f));
          else track("event", "form_submit", { form: f.id || f.getAttribute("name") || "", action: f.getAttribute("action") || "" });
          flush(true); // the page may be about to unload
        }, true);
      }).catch(function () { /* tracking is best effort */ });
  }
  /* A form's fields by name, without passwords, payment fields (autocomplete cc-*), hidden
     fields or anything whose name looks sensitive. */
  function formData(f) {
    var out = {};
    Array.prototype.forEach.call(f.elements, function (x) {
      var ac = (x.getAttribute("autocomplete") || "").toLowerCase();
      if (!x.name || x.type === "password" || x.type === "hidden" || x.type === "file" || /^cc-/.test(ac) || ac.indexOf("cc-") >= 0 || SENSITIVE.test(x.name)) return;
      if ((x.type === "checkbox" || x.type === "radio") && !x.checked) return;
      out[x.name] = String(x.value).slice(0, 500);
    });
    return out;
  }
  function push(item, now) {
    var i = tracker.queue.indexOf(item);
    if (i < 0) tracker.queue.push(item);
    clearTimeout(tracker.timer);
    if (now) flush(true); else tracker.timer = setTimeout(flush, 800);
  }
  function flush(keepalive) {
    if (!tracker.token || !tracker.queue.length) return;
    var items = tracker.queue.splice(0, 50).map(function (x) { return JSON.parse(JSON.stringify(x)); });
    call("POST", "/track", { items: items }, { "x-parley-tracker": tracker.token }, keepalive).catch(function () { /* best effort */ });
  }
  function track(kind, name, data) {
    if (!tracker.token) return;
    push({ id: rid(), kind: kind, name: String(name).slice(0, 200), url: location.href, data: data && typeof data === "object" ? data : { value: data } });
  }

  var api = window.Parley = {
    loaded: true,
    /** Records a custom event: Parley.track("added_to_cart", {sku: "A1"}). */
    track: function (name, data) { track("event", name, data); },
    /** Records a trigger with structured data: Parley.trigger("quote_request", {...}). */
    trigger: function (name, data) { track("trigger", name, data); },
    /** Draws the widget open inside `mount` from settings `cfg`, without any request (the
        dashboard's live preview). */
    preview: function (mount, cfg) { return new Widget(cfg, mount, true); },
    open: function () { if (api.widget) api.widget.toggle(true); },
    close: function () { if (api.widget) api.widget.toggle(false); }
  };
  if (!KEY) return;
  call("GET", "/config").then(json).then(function (cfg) {
    trackerStart(cfg);
    function go() { api.widget = new Widget(cfg); }
    if (document.body) go(); else document.addEventListener("DOMContentLoaded", go);
  }).catch(function (e) { if (window.console) console.warn("Parley widget: " + e.message); });
})();
