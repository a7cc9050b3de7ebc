// riskloop console: draws the figures each page carries as JSON, nothing else.
// Figures live in <script type="application/json" id="fig-..."> next to a <div data-figure>.
(function () {
  "use strict";
  var CONFIG = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["sendDataToCloud", "select2d", "lasso2d"]};

  function draw() {
    var holders = document.querySelectorAll("[data-figure]");
    for (var i = 0; i < holders.length; i++) {
      var div = holders[i];
      var src = document.getElementById(div.getAttribute("data-figure"));
      if (!src || typeof Plotly === "undefined") { continue; }
      var fig = JSON.parse(src.textContent);
      Plotly.newPlot(div, fig.data, fig.layout, CONFIG).then(function (el) {
        el.setAttribute("data-drawn", "1");
      });
    }
  }

  function autoRefresh() {
    var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (every > 0) {
      window.setTimeout(function () {
        if (!document.querySelector("form :focus")) { window.location.reload(); }
        else { autoRefresh(); }
      }, every * 1000);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { draw(); autoRefresh(); });
  } else { draw(); autoRefresh(); }
})();
