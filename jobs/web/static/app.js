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

var SLOTS = 36;  // 3 minutes of 5-s buckets at least: a new batch's first bars stand left

// Grouped bars, one group per bucket: requests/s, 429s/s and errors/s.
function drawChart(canvas, buckets) {
  var ctx = canvas.getContext("2d");
  var width = canvas.width, height = canvas.height, top = 16, bottom = 4;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#555";
  ctx.font = "12px sans-serif";
  if (!buckets.length) {
    ctx.fillText("No requests yet", 8, 14);
    return;
  }
  var shown = buckets.slice(-120), slots = Math.max(SLOTS, shown.length);
  var most = 1;
  shown.forEach(function (b) { most = Math.max(most, b.requests, b.limited, b.errors); });
  ctx.fillText("most " + most.toFixed(1) + "/s", 8, 12);
  var group = width / slots, bar = Math.max(1, (group - 2) / 3);
  shown.forEach(function (b, i) {
    Object.keys(COLOURS).forEach(function (kind, k) {
      var tall = (b[kind] / most) * (height - top - bottom);
      ctx.fillStyle = COLOURS[kind];
      ctx.fillRect(i * group + 1 + k * bar, height - bottom - tall, bar, tall);
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
  section.querySelectorAll('[data-field="failed-link"]').forEach(function (node) {
    node.hidden = !data.counts.failed;
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
  var state = first.state;
  source.onmessage = function (event) {
    var now = JSON.parse(event.data);
    show(section, now);
    // Paused or going on (by a button, another person, or by itself: its canary, its
    // guard): the actions that fit now, and why it paused.
    if (now.state !== state) {
      state = now.state;
      refreshItems();
    }
  };
  source.addEventListener("end", function () {
    source.close();
    refreshItems();
  });
}

// The batch ended or changed state: its actions, items and pause reason as the server
// now renders them, swapped in (no reload).
function refreshItems() {
  fetch(window.location.href, { credentials: "same-origin" })
    .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
    .then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      ["actions", "items", "paused-reason"].forEach(function (id) {
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
