// predstore view: the little the pages do in the browser. Charts are plotly's (bundled, offline).
"use strict";

const plotConfig = { displayModeBar: false, responsive: true };
const margins = { l: 48, r: 12, t: 8, b: 60 };

function histogram(figure) {
  fetch(figure.dataset.src).then((r) => r.json()).then((h) => {
    const note = figure.querySelector(".note");
    if (h.error) { note.textContent = h.error; return; }
    const plot = figure.querySelector(".plot");
    const extra = [];
    if (h.nulls) extra.push(`${h.nulls} nulls`);
    if (h.other) extra.push(`${h.other} rows of less frequent values`);
    note.textContent = extra.join(", ");
    Plotly.newPlot(plot, [{ type: "bar", x: h.labels, y: h.counts, customdata: h.filters,
      marker: { color: "#4a7fd0" }, hovertemplate: "%{x}: %{y}<extra></extra>" }],
      { margin: margins, xaxis: { type: "category", tickangle: -40 } }, plotConfig);
    plot.on("plotly_click", (event) => {
      const where = event.points[0].customdata;
      const url = new URL(figure.dataset.rows, window.location.href);
      url.searchParams.set("where", where);
      window.location.href = url.toString();
    });
  });
}

function bars(div) {
  const b = JSON.parse(div.dataset.bars);
  Plotly.newPlot(div, [{ type: "bar", x: b.x, y: b.y, marker: { color: "#4a7fd0" } }],
    { margin: margins, xaxis: { type: "category" } }, plotConfig);
}

function curve(figure) {
  const lines = JSON.parse(figure.dataset.lines);
  Plotly.newPlot(figure.querySelector(".plot"),
    lines.map((l) => ({ type: "scatter", mode: "lines", name: l.run, x: l.x, y: l.y })),
    { margin: { l: 48, r: 12, t: 8, b: 36 }, legend: { orientation: "h" } }, plotConfig);
}

function slider(input, image, source) {
  const output = input.parentElement.querySelector("output");
  input.addEventListener("input", () => {
    const step = source(Number(input.value));
    output.textContent = step.label;
    image.src = step.src;
  });
}

function liveRuns(container) {
  // Poll while runs are alive: the server rescans the registry at most every 2 s.
  const running = () => Number(container.querySelector("[data-running]").dataset.running);
  if (!running()) return;
  const timer = setInterval(() => {
    fetch(container.dataset.live).then((r) => r.text()).then((html) => {
      const checked = new Set([...container.querySelectorAll("input[name=run]:checked")].map((c) => c.value));
      container.innerHTML = html;
      container.querySelectorAll("input[name=run]").forEach((c) => { c.checked = checked.has(c.value); });
      if (!running()) clearInterval(timer);
    });
  }, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("figure.histogram").forEach(histogram);
  document.querySelectorAll("div.bars").forEach(bars);
  document.querySelectorAll("figure.curve").forEach(curve);
  document.querySelectorAll("input.slice").forEach((input) => {
    const image = input.closest("section").querySelector("img");
    slider(input, image, (z) => ({ label: String(z), src: `${image.dataset.base}&z=${z}` }));
  });
  document.querySelectorAll("section.media").forEach((section) => {
    const sources = JSON.parse(section.dataset.sources);
    const steps = JSON.parse(section.dataset.steps);
    const image = section.querySelector("img");
    slider(section.querySelector("input.step"), image,
      (i) => ({ label: String(steps[i]), src: `${image.dataset.base}&path=${sources[i]}` }));
  });
  const live = document.getElementById("runs-table");
  if (live) liveRuns(live);
});
