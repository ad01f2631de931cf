// Live numbers for the dashboard's first page: polls the JSON summary and
// updates the counts, the pool gauges and the chart in place. The page reads
// without it; nothing here is needed to act.
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  if (!document.getElementById("counts")) return;
  const svgNS = "http://www.w3.org/2000/svg";

  function chart(lines) {
    let svg = document.querySelector("svg.chart");
    if (!svg) {
      if (lines.length === 0) return;
      svg = document.createElementNS(svgNS, "svg");
      svg.setAttribute("class", "chart");
      svg.setAttribute("viewBox", "0 0 600 120");
      svg.setAttribute("width", "600");
      svg.setAttribute("height", "120");
      document.getElementById("counts").querySelector("ul").after(svg);
      const legend = document.createElement("p");
      legend.className = "legend";
      for (const line of lines) {
        const key = document.createElement("span");
        key.className = "key key-" + line.state;
        key.textContent = line.state + " ";
        legend.appendChild(key);
      }
      svg.after(legend);
    }
    for (const line of lines) {
      let poly = svg.querySelector('polyline[data-state="' + line.state + '"]');
      if (!poly) {
        poly = document.createElementNS(svgNS, "polyline");
        poly.setAttribute("fill", "none");
        poly.setAttribute("stroke", line.colour);  // the server's, as on the SVG it draws
        poly.setAttribute("stroke-width", "2");
        poly.dataset.state = line.state;
        svg.appendChild(poly);
      }
      poly.setAttribute("points", line.points);
    }
  }

  async function refresh() {
    try {
      const response = await fetch(base + "/api/summary", {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) return;
      const data = await response.json();
      for (const [state, n] of Object.entries(data.shown)) {
        const el = document.querySelector('[data-total="' + state + '"]');
        if (el) el.textContent = String(n);
      }
      const oldest = document.querySelector("[data-oldest]");
      if (oldest) oldest.textContent = data.oldest_due || "-";
      if (data.pool) {
        for (const name of ["queued", "running", "retrying"]) {
          const el = document.querySelector('[data-pool="' + name + '"]');
          if (el) el.textContent = String(data.pool[name]);
        }
      }
      chart(data.chart);
      document.body.dataset.refreshed = String(Date.now());
    } catch (error) {
      // A failed poll leaves the page as it was; the next one may pass.
    }
  }
  refresh();
  setInterval(refresh, 5000);  // the server reads the database at most every `refresh` seconds anyway
})();
