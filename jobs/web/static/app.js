// The pages' only script: confirmations, the file drop zone, and a batch page kept live
// from the server's events (counts, progress, the chart of the workers' time buckets).
"use strict";

document.addEventListener("submit", function (event) {
  var question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

function dropZone(input) {
  ["dragenter", "dragover"].forEach(function (name) {
    input.addEventListener(name, function () { input.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    input.addEventListener(name, function () { input.classList.remove("over"); });
  });
}

function setText(root, selector, text) {
  root.querySelectorAll(selector).forEach(function (node) { node.textContent = text; });
}

var COLOURS = { requests: "#0b5cad", limited: "#b35c00", errors: "#a4161a" };

function drawChart(canvas, buckets) {
  var ctx = canvas.getContext("2d");
  var width = canvas.width, height = canvas.height, pad = 4;
  ctx.clearRect(0, 0, width, height);
  if (!buckets.length) {
    ctx.fillStyle = "#555";
    ctx.fillText("No requests yet", 10, 20);
    return;
  }
  var top = 1;
  buckets.forEach(function (b) { top = Math.max(top, b.requests, b.limited, b.errors); });
  ctx.fillStyle = "#555";
  ctx.fillText(top.toFixed(1) + "/s", 6, 12);
  Object.keys(COLOURS).forEach(function (kind) {
    ctx.strokeStyle = COLOURS[kind];
    ctx.lineWidth = 2;
    ctx.beginPath();
    buckets.forEach(function (b, i) {
      var x = buckets.length === 1 ? width / 2 : pad + (i * (width - 2 * pad)) / (buckets.length - 1);
      var y = height - pad - (b[kind] / top) * (height - 2 * pad - 12);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = COLOURS[kind];
    buckets.forEach(function (b, i) {  // a dot per bucket: one bucket is a chart too
      var x = buckets.length === 1 ? width / 2 : pad + (i * (width - 2 * pad)) / (buckets.length - 1);
      var y = height - pad - (b[kind] / top) * (height - 2 * pad - 12);
      ctx.fillRect(x - 2, y - 2, 4, 4);
    });
  });
}

function paceText(pace) {
  if (!pace.length) return ["No limiter state yet (no request sent)."];
  return pace.map(function (p) {
    var text = p.api + ": " + p.rate + " requests/s now";
    if (p.learned !== null) text += ", learned " + p.learned + "/s";
    if (p.held_for) text += ", every worker holding " + p.held_for + " s after 429s";
    return text;
  });
}

function show(section, data) {
  setText(section, '[data-field="state"]', data.state);
  setText(section, '[data-field="percent"]', data.percent);
  setText(section, '[data-field="ended"]', data.ended);
  setText(section, '[data-field="rate"]', data.rate === null ? "—" : data.rate);
  setText(section, '[data-field="eta"]', data.eta);
  setText(section, '[data-field="finished_at"]', data.finished_at || "—");
  Object.keys(data.counts).forEach(function (name) {
    setText(section, '[data-count="' + name + '"]', data.counts[name]);
  });
  var bar = document.getElementById("bar");
  if (bar) { bar.value = data.percent; bar.textContent = data.percent + "%"; }
  var list = section.querySelector('[data-field="pace"]');
  if (list) {
    list.replaceChildren.apply(list, paceText(data.pace).map(function (text) {
      var item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
  }
  var hook = data.webhook;
  if (hook) {
    setText(section, '[data-field="webhook"]', hook.url + ": " + hook.status + ", " +
      hook.attempts + " attempt(s)" + (hook.error ? ", " + hook.error : ""));
  }
  var canvas = document.getElementById("chart");
  if (canvas) drawChart(canvas, data.timeline);
}

function follow(section) {
  var first = JSON.parse(section.dataset.live);
  show(section, first);
  if (first.done) return;
  var source = new EventSource(section.dataset.events);
  source.onmessage = function (event) { show(section, JSON.parse(event.data)); };
  source.addEventListener("end", function () {
    source.close();
    refreshItems();
  });
}

// The batch ended: its actions and items as the server now renders them, swapped in
// (no reload).
function refreshItems() {
  fetch(window.location.href, { credentials: "same-origin" })
    .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
    .then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      ["actions", "items"].forEach(function (id) {
        var now = document.getElementById(id), next = fresh.getElementById(id);
        if (now && next) now.replaceWith(next);
      });
    })
    .catch(function () { /* the live counts stand; a reload shows the items */ });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input.drop").forEach(dropZone);
  var section = document.getElementById("live");
  if (section) follow(section);
});
