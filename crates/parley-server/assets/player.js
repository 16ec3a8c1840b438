// Parley's audio player (issue 15): every `.player[data-src]` in the dashboard becomes a
// waveform drawn from the server's peaks (`data-peaks`, JSON {duration_ms, peaks:[min,max,…]}
// in -127..127), play/pause, speed 0.5/1/1.5/2x with pitch preserved, skip -5/+5 s, click or
// drag on the waveform to seek, elapsed/total, auto-advance to the next audio message, and
// keys: space, arrows, [ ]. A `.call-player` also highlights the transcript message being
// spoken (`.msg[data-start-ms][data-end-ms]`) and seeks to a message clicked.
(function () {
  "use strict";
  var SPEEDS = [0.5, 1, 1.5, 2];
  function clock(s) {
    s = Math.max(0, Math.floor(s || 0));
    var m = Math.floor(s / 60), r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }
  function button(cls, label, text) {
    var b = el("button", "pl-btn " + cls, text);
    b.type = "button";
    b.setAttribute("aria-label", label);
    b.title = label;
    return b;
  }
  function players() {
    return Array.prototype.slice.call(document.querySelectorAll(".player[data-ready]"));
  }

  function init(root) {
    if (root.hasAttribute("data-ready")) return;
    root.setAttribute("data-ready", "");
    var label = root.getAttribute("data-label") || "Audio";
    var audio = el("audio");
    audio.preload = "metadata";
    audio.src = root.getAttribute("data-src");
    audio.preservesPitch = true;
    audio.mozPreservesPitch = true;
    audio.webkitPreservesPitch = true;
    var play = button("pl-play", "Play " + label, "▶");
    var back = button("pl-back", "Back 5 seconds", "−5");
    var fwd = button("pl-fwd", "Forward 5 seconds", "+5");
    var speed = button("pl-speed", "Playback speed", "1×");
    var wave = el("canvas", "pl-wave");
    wave.setAttribute("role", "slider");
    wave.setAttribute("tabindex", "0");
    wave.setAttribute("aria-label", "Seek in " + label);
    wave.setAttribute("aria-valuemin", "0");
    var time = el("span", "pl-time", "0:00 / 0:00");
    time.setAttribute("aria-live", "off");
    var note = el("span", "pl-note");
    root.setAttribute("role", "group");
    root.setAttribute("aria-label", label + " player");
    root.appendChild(play);
    root.appendChild(back);
    root.appendChild(wave);
    root.appendChild(fwd);
    root.appendChild(speed);
    root.appendChild(time);
    root.appendChild(note);
    root.appendChild(audio);
    var peaks = null, total = 0;
    root.player = { audio: audio, root: root };

    function duration() {
      return isFinite(audio.duration) && audio.duration > 0 ? audio.duration : total;
    }
    function draw() {
      var w = wave.clientWidth || 300, h = wave.clientHeight || 40;
      var dpr = window.devicePixelRatio || 1;
      if (wave.width !== Math.round(w * dpr)) wave.width = Math.round(w * dpr);
      if (wave.height !== Math.round(h * dpr)) wave.height = Math.round(h * dpr);
      var g = wave.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      var cs = getComputedStyle(root);
      var on = cs.getPropertyValue("--pl-on").trim() || "#4f46e5";
      var off = cs.getPropertyValue("--pl-off").trim() || "#c7c7d1";
      var d = duration(), at = d ? audio.currentTime / d : 0;
      var pairs = peaks ? peaks.length / 2 : 0, mid = h / 2;
      for (var x = 0; x < w; x += 2) {
        var lo = 0, hi = 0;
        if (pairs) {
          var a = Math.floor((x / w) * pairs), b = Math.max(a + 1, Math.floor(((x + 2) / w) * pairs));
          for (var i = a; i < b && i < pairs; i++) {
            lo = Math.min(lo, peaks[2 * i]);
            hi = Math.max(hi, peaks[2 * i + 1]);
          }
        }
        var top = mid - (hi / 127) * mid, bot = mid - (lo / 127) * mid;
        if (bot - top < 1) { top = mid - 0.5; bot = mid + 0.5; }
        g.fillStyle = x / w < at ? on : off;
        g.fillRect(x, top, 1.5, bot - top);
      }
      wave.setAttribute("aria-valuemax", String(Math.round(d)));
      wave.setAttribute("aria-valuenow", String(Math.round(audio.currentTime)));
      wave.setAttribute("aria-valuetext", clock(audio.currentTime) + " of " + clock(d));
      time.textContent = clock(audio.currentTime) + " / " + clock(d);
    }
    function seekTo(t) {
      var d = duration();
      if (!d) return;
      audio.currentTime = Math.max(0, Math.min(d, t));
      draw();
    }
    function skip(s) { seekTo(audio.currentTime + s); }
    function setSpeed(dir) {
      var i = SPEEDS.indexOf(audio.playbackRate);
      if (i < 0) i = 1;
      i = dir === 0 ? (i + 1) % SPEEDS.length : Math.max(0, Math.min(SPEEDS.length - 1, i + dir));
      audio.playbackRate = SPEEDS[i];
      speed.textContent = SPEEDS[i] + "×";
      speed.setAttribute("aria-label", "Playback speed " + SPEEDS[i] + "×");
    }
    function toggle() {
      if (audio.paused) {
        players().forEach(function (p) { if (p !== root) p.player.audio.pause(); });
        var r = audio.play();
        if (r && r.catch) r.catch(function () {});
      } else audio.pause();
    }
    function fromPointer(e) {
      var r = wave.getBoundingClientRect();
      seekTo(((e.clientX - r.left) / r.width) * duration());
    }
    var dragging = false;
    wave.addEventListener("pointerdown", function (e) {
      dragging = true;
      fromPointer(e);
      try { wave.setPointerCapture(e.pointerId); } catch (_) { /* not an active pointer */ }
    });
    wave.addEventListener("pointermove", function (e) { if (dragging) fromPointer(e); });
    wave.addEventListener("pointerup", function () { dragging = false; });
    play.addEventListener("click", toggle);
    back.addEventListener("click", function () { skip(-5); });
    fwd.addEventListener("click", function () { skip(5); });
    speed.addEventListener("click", function () { setSpeed(0); });
    root.addEventListener("keydown", function (e) {
      if (e.target !== root && e.target !== wave) return;
      var k = e.key;
      if (k === " " || k === "k") toggle();
      else if (k === "ArrowLeft") skip(-5);
      else if (k === "ArrowRight") skip(5);
      else if (k === "[") setSpeed(-1);
      else if (k === "]") setSpeed(1);
      else return;
      e.preventDefault();
    });
    root.tabIndex = 0;
    audio.addEventListener("play", function () {
      play.textContent = "❚❚";
      play.setAttribute("aria-label", "Pause " + label);
      root.classList.add("playing");
    });
    audio.addEventListener("pause", function () {
      play.textContent = "▶";
      play.setAttribute("aria-label", "Play " + label);
      root.classList.remove("playing");
    });
    audio.addEventListener("timeupdate", draw);
    audio.addEventListener("seeked", draw);
    audio.addEventListener("loadedmetadata", draw);
    audio.addEventListener("timeupdate", function () { root.dispatchEvent(new Event("pl-time")); });
    audio.addEventListener("ended", function () {
      draw();
      if (root.classList.contains("call-player")) return;
      var all = players().filter(function (p) { return !p.classList.contains("call-player"); });
      var next = all[all.indexOf(root) + 1];
      if (next) {
        next.player.audio.playbackRate = audio.playbackRate;
        next.querySelector(".pl-speed").textContent = audio.playbackRate + "×";
        var r = next.player.audio.play();
        if (r && r.catch) r.catch(function () {});
      }
    });
    if (window.ResizeObserver) new ResizeObserver(draw).observe(wave);
    draw();
    var src = root.getAttribute("data-peaks");
    if (src) {
      fetch(src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) return;
          peaks = p.peaks || [];
          total = (p.duration_ms || 0) / 1000;
          if (!p.decoded) note.textContent = "No waveform: " + (p.note || "the file could not be decoded");
          root.setAttribute("data-drawn", String(peaks.length / 2));
          draw();
        })
        .catch(function () {});
    }
    if (root.classList.contains("call-player")) follow(root, audio, seekTo);
  }

  // The call player: highlight the message being spoken, seek to a message clicked.
  function follow(root, audio, seekTo) {
    var scope = root.closest(".tab-pane") || document;
    function turns() { return scope.querySelectorAll(".msg[data-start-ms]"); }
    root.addEventListener("pl-time", function () {
      var t = audio.currentTime * 1000;
      Array.prototype.forEach.call(turns(), function (m) {
        var on = t >= +m.getAttribute("data-start-ms") && t < +m.getAttribute("data-end-ms");
        m.classList.toggle("speaking", on);
        if (on) m.setAttribute("aria-current", "true");
        else m.removeAttribute("aria-current");
      });
    });
    scope.addEventListener("click", function (e) {
      var m = e.target.closest && e.target.closest(".msg[data-start-ms]");
      if (!m || e.target.closest("a,button,.player")) return;
      seekTo(+m.getAttribute("data-start-ms") / 1000 + 0.001);
      if (audio.paused) {
        var r = audio.play();
        if (r && r.catch) r.catch(function () {});
      }
    });
  }

  function scan(node) {
    if (!node.querySelectorAll) return;
    if (node.matches && node.matches(".player[data-src]")) init(node);
    Array.prototype.forEach.call(node.querySelectorAll(".player[data-src]"), init);
  }
  function start() {
    scan(document);
    new MutationObserver(function (list) {
      list.forEach(function (r) { Array.prototype.forEach.call(r.addedNodes, scan); });
    }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
