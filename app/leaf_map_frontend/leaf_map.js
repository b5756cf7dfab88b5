// The HARP leaf map, a Streamlit component without a build step (see app/leaf_map.py for the why).
//
// Streamlit's component protocol, by postMessage to the parent page: we send "streamlit:componentReady" once,
// receive "streamlit:render" with the arguments on every rerun that changes them, and send
// "streamlit:setComponentValue" (the leaves the user clicked or lassoed) and "streamlit:setFrameHeight".
//
// Arguments: `base` names a JSON file next to this one with the leaves' positions, sizes and hover texts, the
// labels and the layout (app.figures.map_base); `colors` another with each leaf's effect, sd and measured flag,
// the hover templates and the color bar (app.figures.map_colors). Each is fetched only when its name changes;
// `assemble` puts them together into the plotly figure (as app.figures.assemble_map does), so a change of the
// colored quantity fetches only the small colors file. `marks` are the selection rings and open-leaf crosses as
// small plotly traces, drawn on a 2-D canvas over the WebGL points, so a budget change never makes plotly
// redraw the leaves.
"use strict";

(function () {
  const plot = document.getElementById("map");
  const legend = document.getElementById("legend");
  const problem = document.getElementById("problem");
  const canvas = document.createElement("canvas");
  canvas.id = "marks";
  const CONFIG = { displaylogo: false, scrollZoom: true, responsive: true };
  const TYPES = {
    f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array,
    i4: Int32Array, u4: Uint32Array,
  };

  // plotly.js (plotly's 1.5 MB gl2d bundle, see README.md) is loaded after we tell Streamlit we are ready, so that
  // the first render's arguments arrive, and the base and colors download, while the browser compiles it.
  const plotlyLoaded = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "plotly.min.js";
    script.onload = resolve;
    script.onerror = () => reject(new Error("plotly.min.js could not be loaded"));
    document.head.append(script);
  });
  let baseName = null; // the base on screen
  let colorsName = null; // the colors on screen
  let examplesName = null; // the examples of open leaves on screen ("" for none)
  let examples = null; // their decoded plotly trace
  let base = null; // the decoded base: {leaves: {x, y, size, parent, points, text}, kinds, data, layoutJson}
  let colors = null; // the decoded colors: {effect, sd, measured, hovertemplate, coloraxis}
  let marks = []; // decoded marks: {name, color, width, symbol, x, y, size, visible}
  // The leaves beyond the default view (the base's layout.meta.outside): drawn as arrowheads at the edge
  // of the plot while they lie outside the current axes, so that zooming to the bulk hides no leaf silently.
  let outside = { x: [], y: [] };
  let outsideShown = 0;
  const outsideNote = document.createElement("span");
  outsideNote.id = "outside-note";
  outsideNote.title = "Double-click the map to show every leaf; double-click again for the default view";
  const hidden = new Set(); // marks the user switched off in the legend
  let pending = null;
  let busy = false;

  function post(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*");
  }

  // plotly's typed-array JSON ({dtype, bdata}), a plain list, or a scalar.
  function decode(value) {
    if (value && typeof value === "object" && !Array.isArray(value) && value.bdata !== undefined) {
      // A plain loop, not Uint8Array.from(text, mapper): the mapper's call per byte took 17 times as long in
      // headless Chromium (214 ms against 12 ms for 800 kB, about 120 ms of each recolor at 50,000 leaves).
      const text = atob(value.bdata);
      const bytes = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
      return new (TYPES[value.dtype] || Float64Array)(bytes.buffer);
    }
    return value;
  }

  function decodeMark(trace) {
    const marker = trace.marker || {};
    return {
      name: String(trace.name || ""),
      visible: trace.visible === true || trace.visible === undefined,
      color: String(marker.color || "#111111"),
      width: Number((marker.line && marker.line.width) || 2),
      symbol: String(marker.symbol || "circle-open"),
      x: decode(trace.x) || [],
      y: decode(trace.y) || [],
      size: decode(marker.size === undefined ? 10 : marker.size),
      dash: trace.meta && Array.isArray(trace.meta.dash) ? trace.meta.dash.map(Number) : [],
    };
  }

  async function fetchJson(name) {
    const response = await fetch(name);
    if (!response.ok) throw new Error("the map's data could not be fetched (" + response.status + ")");
    return response.json();
  }

  function decodeBase(raw) {
    const leaves = raw.leaves;
    const layout = raw.layout || {};
    const outsideRaw = (layout.meta && layout.meta.outside) || {};
    const plain = Object.assign({}, layout);
    delete plain.meta;
    return {
      leaves: {
        x: decode(leaves.x), y: decode(leaves.y), size: decode(leaves.size), parent: decode(leaves.parent),
        points: decode(leaves.points), text: leaves.text,
      },
      kinds: raw.kinds,
      data: raw.data || [],
      layoutJson: JSON.stringify(plain), // copied afresh for every draw: plotly writes into the layout it gets
      outside: { x: decode(outsideRaw.x) || [], y: decode(outsideRaw.y) || [] },
    };
  }

  // The examples of open leaves (app.figures.example_trace): a small-marker trace drawn over the leaves.
  function decodeExamples(raw) {
    return Object.assign({}, raw, { x: decode(raw.x), y: decode(raw.y) });
  }

  function decodeColors(raw) {
    return Object.assign({}, raw, { effect: decode(raw.effect), sd: decode(raw.sd), measured: decode(raw.measured) });
  }

  // One trace of inferred leaves and one of measured ones, then the labels: app.figures.assemble_map's figure.
  // Leaf ids travel in the first column of each leaf trace's customdata.
  function assemble() {
    const leaves = base.leaves;
    const n = leaves.x.length;
    const traces = base.kinds.map((kind, k) => {
      let count = 0;
      for (let g = 0; g < n; g++) if (colors.measured[g] === k) count++;
      const x = new Float32Array(count);
      const y = new Float32Array(count);
      const color = new Float32Array(count);
      const size = new Float32Array(count);
      const custom = new Array(count);
      const text = new Array(count);
      let j = 0;
      for (let g = 0; g < n; g++) {
        if (colors.measured[g] !== k) continue;
        x[j] = leaves.x[g];
        y[j] = leaves.y[g];
        color[j] = colors.effect[g];
        size[j] = leaves.size[g];
        custom[j] = [g, leaves.parent[g], leaves.points[g], colors.effect[g], colors.sd[g]];
        text[j] = leaves.text[g];
        j++;
      }
      const trace = Object.assign({}, kind);
      delete trace.kind;
      return Object.assign(trace, {
        x: x, y: y, customdata: custom, text: text, hovertemplate: colors.hovertemplate[kind.kind],
        visible: count > 0, marker: Object.assign({}, kind.marker, { color: color, size: size }),
      });
    });
    const layout = Object.assign(JSON.parse(base.layoutJson), { coloraxis: colors.coloraxis });
    const data = traces.concat(base.data);
    return { data: examples ? data.concat([examples]) : data, layout: layout };
  }

  function shown(mark) {
    return mark.visible && !hidden.has(mark.name);
  }

  // Draw the marks in pixels of plotly's current axes, clipped to the plot area, on a canvas that sits in
  // plotly's WebGL container: above the leaves, below the hover labels.
  function drawMarks() {
    const layout = plot._fullLayout;
    if (!layout || !layout.xaxis || !layout.yaxis) return;
    const holder = layout._glcontainer && layout._glcontainer.node();
    if (holder && canvas.parentNode !== holder) holder.appendChild(canvas);
    const width = layout.width;
    const height = layout.height;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const xa = layout.xaxis;
    const ya = layout.yaxis;
    context.save();
    context.beginPath();
    context.rect(xa._offset, ya._offset, xa._length, ya._length);
    context.clip();
    for (const mark of marks) {
      if (!shown(mark)) continue;
      context.strokeStyle = mark.color;
      context.lineWidth = mark.width;
      context.setLineDash(mark.dash); // HARP-E's rings are dashed, HARP-C's solid
      context.beginPath();
      const cross = mark.symbol.startsWith("x");
      for (let i = 0; i < mark.x.length; i++) {
        const px = xa._offset + xa.l2p(mark.x[i]);
        const py = ya._offset + ya.l2p(mark.y[i]);
        const radius = (typeof mark.size === "number" ? mark.size : mark.size[i]) / 2;
        if (cross) {
          const d = radius * 0.7;
          context.moveTo(px - d, py - d);
          context.lineTo(px + d, py + d);
          context.moveTo(px - d, py + d);
          context.lineTo(px + d, py - d);
        } else {
          context.moveTo(px + radius, py);
          context.arc(px, py, radius, 0, 2 * Math.PI);
        }
      }
      context.stroke();
    }
    outsideShown = drawOutside(context, xa, ya);
    context.restore();
    outsideNote.textContent = outsideShown
      ? "\u25b8 " + outsideShown + (outsideShown === 1 ? " leaf" : " leaves") + " beyond the view (double-click: all)"
      : "";
    outsideNote.hidden = !outsideShown;
    document.body.dataset.outside = String(outsideShown);
    // What the map shows, for the browser tests and the benchmark.
    for (const mark of marks) {
      const key = { "selected (HARP-C)": "ringsC", "selected (HARP-E)": "ringsE", "open in leaf panel": "opened" }[
        mark.name
      ];
      if (key) document.body.dataset[key] = String(shown(mark) ? mark.x.length : 0);
    }
  }

  // An arrowhead at the edge of the plot area for each leaf of `outside` that lies beyond the current axes,
  // pointing from the centre of the view towards the leaf. Returns how many were drawn.
  function drawOutside(context, xa, ya) {
    const [x0, x1] = [Math.min(...xa.range), Math.max(...xa.range)];
    const [y0, y1] = [Math.min(...ya.range), Math.max(...ya.range)];
    const inset = 6;
    const cx = xa._offset + xa._length / 2;
    const cy = ya._offset + ya._length / 2;
    let count = 0;
    context.fillStyle = "rgba(60,60,60,0.75)";
    context.setLineDash([]);
    context.beginPath();
    for (let i = 0; i < outside.x.length; i++) {
      const x = outside.x[i];
      const y = outside.y[i];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) continue;
      count++;
      const px = xa._offset + xa.l2p(x);
      const py = ya._offset + ya.l2p(y);
      const ex = Math.min(Math.max(px, xa._offset + inset), xa._offset + xa._length - inset);
      const ey = Math.min(Math.max(py, ya._offset + inset), ya._offset + ya._length - inset);
      const angle = Math.atan2(py - cy, px - cx);
      const tip = 8;
      const back = 5;
      context.moveTo(ex + tip * Math.cos(angle), ey + tip * Math.sin(angle));
      context.lineTo(ex + back * Math.cos(angle + 2.4), ey + back * Math.sin(angle + 2.4));
      context.lineTo(ex + back * Math.cos(angle - 2.4), ey + back * Math.sin(angle - 2.4));
      context.closePath();
    }
    context.fill();
    return count;
  }

  // The mark as the map draws it, in small: a cross, or a ring in the mark's color, line width and dash (so that
  // HARP-E's dashed ring and the design selection's dotted one differ in the legend as on the map).
  function legendSymbol(mark) {
    const SVG = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("class", "symbol");
    svg.dataset.dash = mark.dash.join(",");
    const stroke = { stroke: mark.color, "stroke-width": String(Math.min(mark.width, 2.5)), fill: "none" };
    const shape = document.createElementNS(SVG, mark.symbol.startsWith("x") ? "path" : "circle");
    const attributes = mark.symbol.startsWith("x")
      ? { d: "M3 3L13 13M3 13L13 3" }
      : { cx: "8", cy: "8", r: "6", "stroke-dasharray": mark.dash.length ? mark.dash.join(" ") : "none" };
    for (const [name, value] of Object.entries(Object.assign(stroke, attributes))) shape.setAttribute(name, value);
    svg.append(shape);
    return svg;
  }

  function drawLegend() {
    legend.replaceChildren();
    for (const mark of marks) {
      if (!mark.visible) continue;
      const item = document.createElement("span");
      item.append(legendSymbol(mark), document.createTextNode(mark.name));
      item.title = "Show or hide on the map";
      if (hidden.has(mark.name)) item.className = "hidden";
      item.addEventListener("click", () => {
        if (hidden.has(mark.name)) hidden.delete(mark.name);
        else hidden.add(mark.name);
        drawMarks();
        drawLegend();
      });
      legend.append(item);
    }
    legend.append(outsideNote);
  }

  // Leaf ids travel in the first column of each leaf trace's customdata; never rely on point indices.
  function pick(points) {
    const leaves = new Set();
    for (const point of points || []) {
      const custom = point.customdata;
      if (custom === undefined || custom === null) continue;
      const first = typeof custom === "object" ? custom[0] : custom;
      const leaf = Number(first);
      if (Number.isFinite(leaf) && leaf >= 0) leaves.add(Math.round(leaf));
    }
    if (!leaves.size) return;
    const value = { leaves: Array.from(leaves).sort((a, b) => a - b), at: Date.now() };
    post("streamlit:setComponentValue", { value: value, dataType: "json" });
  }

  function listen() {
    plot.on("plotly_click", (event) => pick(event && event.points));
    plot.on("plotly_selected", (event) => pick(event && event.points));
    for (const name of ["plotly_afterplot", "plotly_relayout", "plotly_relayouting"]) plot.on(name, drawMarks);
  }

  async function render(args) {
    const started = performance.now();
    marks = (args.marks || []).map(decodeMark);
    const wantedExamples = args.examples || "";
    if (args.base !== baseName || args.colors !== colorsName || wantedExamples !== examplesName) {
      const first = baseName === null;
      if (first && args.height) post("streamlit:setFrameHeight", { height: args.height });
      const [rawBase, rawColors, rawExamples] = await Promise.all([
        args.base !== baseName ? fetchJson(args.base) : null,
        args.colors !== colorsName ? fetchJson(args.colors) : null,
        wantedExamples && wantedExamples !== examplesName ? fetchJson(wantedExamples) : null,
        plotlyLoaded,
      ]);
      if (rawBase) base = decodeBase(rawBase);
      if (rawColors) colors = decodeColors(rawColors);
      if (!wantedExamples) examples = null;
      else if (rawExamples) examples = decodeExamples(rawExamples);
      outside = base.outside;
      const fetched = performance.now();
      const figure = assemble();
      const assembled = performance.now();
      await Plotly.react(plot, figure.data, figure.layout, CONFIG);
      // Where the last full redraw went (milliseconds: fetching and decoding the files, putting the figure
      // together, plotly), for the benchmark.
      document.body.dataset.redrawParts = JSON.stringify({
        fetch: Math.round(fetched - started), assemble: Math.round(assembled - fetched),
        plotly: Math.round(performance.now() - assembled),
      });
      if (first) listen();
      baseName = args.base;
      colorsName = args.colors;
      examplesName = wantedExamples;
      // How many examples of open leaves are drawn, for the browser tests.
      document.body.dataset.examples = String(examples ? examples.x.length : 0);
      // Which base and colors are drawn, for the tests and the benchmark.
      document.body.dataset.base = baseName;
      document.body.dataset.colors = colorsName;
    }
    drawMarks();
    drawLegend();
    post("streamlit:setFrameHeight", { height: document.body.scrollHeight });
    // Milliseconds the last render took in this frame (fetches, plotly, marks), for the benchmark.
    document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  }

  async function update() {
    busy = true;
    try {
      while (pending) {
        const args = pending;
        pending = null;
        await render(args);
      }
      problem.hidden = true;
    } catch (error) {
      problem.textContent = "The leaf map could not be drawn: " + error.message + ". Reload the page to retry.";
      problem.hidden = false;
      post("streamlit:setFrameHeight", { height: document.body.scrollHeight });
    } finally {
      busy = false;
    }
  }

  window.addEventListener("message", (event) => {
    const message = event.data;
    if (!message || message.type !== "streamlit:render") return;
    pending = message.args || {};
    if (!busy) update();
  });
  window.addEventListener("resize", drawMarks);
  // The mouse wheel scrolls the page, not the map, until the user interacts with the map (a click, a drag, a
  // lasso); from then on it zooms the map, until the pointer leaves the map's frame. Stopping the event before plotly's own
  // handler sees it leaves the browser's default, which scrolls the page around this frame.
  let engaged = false;
  plot.addEventListener("mousedown", () => {
    engaged = true;
    document.body.dataset.wheel = "zooms";
  }, true);
  // The frame's document, not the plot: plotly covers the window with its own element while the user drags.
  document.documentElement.addEventListener("mouseleave", () => {
    engaged = false;
    document.body.dataset.wheel = "scrolls";
  });
  window.addEventListener("wheel", (event) => {
    if (!engaged) event.stopPropagation();
  }, { capture: true });
  document.body.dataset.wheel = "scrolls";
  post("streamlit:componentReady", { apiVersion: 1 });
})();
