/* The widget settings page's live preview: reads the form and redraws the real widget
   (window.Parley.preview from /widget.js) inside #widget-preview on every change. */
(function () {
  "use strict";
  var form = document.getElementById("widget-form"), mount = document.getElementById("widget-preview");
  if (!form || !mount) return;
  function value(name) { var x = form.elements[name]; return x ? x.value : ""; }
  function preChat(text) {
    return text.split("\n").map(function (l) { return l.split("|").map(function (p) { return p.trim(); }); })
      .filter(function (p) { return p[0] && p.length >= 2; })
      .map(function (p) {
        return { key: p[0], label: p[1], kind: p[2] || "text", required: p[3] === "required",
                 options: (p[4] || "").split(",").map(function (o) { return o.trim(); }).filter(Boolean) };
      });
  }
  function config() {
    var base = JSON.parse(mount.getAttribute("data-config") || "{}"), strings = {};
    Object.keys(base.strings || {}).forEach(function (k) { strings[k] = value("str_" + k) || base.strings[k]; });
    return { title: value("title"), greeting: value("greeting"), color: value("color"), text_color: value("text_color"),
             position: value("position"), mode: value("mode"), pre_chat: preChat(value("pre_chat")), strings: strings,
             voice_transcribed: !!value("transcription_model").trim(),
             call: /voice/.test(value("mode")) && !!value("transcription_model").trim() && !!value("speech_model").trim() };
  }
  function draw() { if (window.Parley && window.Parley.preview) window.Parley.preview(mount, config()); }
  form.addEventListener("input", draw);
  form.addEventListener("change", draw);
  if (window.Parley) draw(); else window.addEventListener("load", draw);
})();
