/**
 * The studio's page: markup and style only (the script is src/studio/page/app.ts, built by tsc to /app.js). Nothing
 * is loaded from anywhere else: it works offline.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cm studio</title>
<style>
  :root { color-scheme: dark; --bar: #1d2024; --line: #33383f; --text: #e6e6e6; --dim: #9aa0a6; --accent: #4c8dff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.3 system-ui, sans-serif; background: #121416; color: var(--text); display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; padding: 6px 10px; background: var(--bar); border-bottom: 1px solid var(--line); }
  header .group { display: flex; gap: 6px; align-items: center; }
  header .group + .group { border-left: 1px solid var(--line); padding-left: 12px; }
  button, select, input, label.button { font: inherit; color: var(--text); background: #2a2e34; border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; }
  button:hover:not(:disabled), label.button:hover { border-color: var(--accent); }
  button:disabled { opacity: 0.45; }
  button[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
  #run { background: #2f6f3e; border-color: #3c8a4e; font-weight: 600; }
  #cancel { background: #7a2f2f; border-color: #944; }
  input[type="number"] { width: 5.5em; }
  input[type="file"] { display: none; }
  label { color: var(--dim); }
  .hidden { display: none !important; }
  main { flex: 1; position: relative; overflow: hidden; background: repeating-conic-gradient(#1a1c1f 0 25%, #16181a 0 50%) 0 0 / 24px 24px; }
  #view { position: absolute; inset: 0; width: 100%; height: 100%; cursor: crosshair; touch-action: none; }
  #drop { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center; color: var(--dim); font-size: 16px; pointer-events: none; text-align: center; }
  main.dragging { outline: 3px dashed var(--accent); outline-offset: -6px; }
  footer { display: flex; gap: 12px; align-items: center; padding: 5px 10px; background: var(--bar); border-top: 1px solid var(--line); min-height: 34px; }
  #progress { width: 220px; }
  #status { flex: 1; color: var(--dim); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #status.error { color: #ff8a80; }
  #compareBox { display: flex; align-items: center; gap: 6px; }
  #compare { width: 200px; }
  a.button { color: var(--text); text-decoration: none; background: #2a2e34; border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; }
  a.button[aria-disabled="true"] { opacity: 0.45; pointer-events: none; }
  #inputs button { max-width: 12em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
</style>
</head>
<body>
<header>
  <div class="group">
    <label class="button" title="Open an image (or drop one on the page)">Open image<input id="file" type="file" accept="image/*"></label>
    <label class="button" title="Use a mask image (white = fill)">Upload mask<input id="maskFile" type="file" accept="image/*"></label>
    <span id="inputs"></span>
  </div>
  <div class="group">
    <label for="task">Task</label>
    <select id="task"><option>inpaint</option><option>colorize</option><option>superres</option><option>stroke</option><option>denoise</option></select>
    <span data-for="superres"><label for="scale">scale</label> <select id="scale"><option>2</option><option selected>4</option><option>8</option></select></span>
    <span data-for="denoise"><label for="noise">noise</label> <input id="noise" type="number" min="1" max="255" value="25"></span>
    <span data-for="stroke"><label for="strength">strength</label> <input id="strength" type="number" min="0.05" max="1" step="0.05" placeholder="model's"></span>
    <label for="quality">quality</label> <select id="quality"><option>fast</option><option selected>default</option><option>best</option></select>
    <label for="seed">seed</label> <input id="seed" type="number" min="0" placeholder="random">
  </div>
  <div class="group" id="tools">
    <button id="brush" aria-pressed="true" title="Paint the mask: the part to fill (B)">Brush</button>
    <button id="eraser" aria-pressed="false" title="Erase mask or strokes (E)">Eraser</button>
    <button id="paint" aria-pressed="false" title="Paint coloured strokes for the stroke task (P)">Strokes</button>
    <input id="colour" type="color" value="#3a7bd5" title="Stroke colour">
    <label for="size">size</label> <input id="size" type="range" min="1" max="400" value="40" title="Brush size: [ and ] or the wheel"><span id="sizeText">40</span>
    <button id="undo" title="Undo (Ctrl+Z)">Undo</button>
    <button id="redo" title="Redo (Ctrl+Shift+Z)">Redo</button>
    <button id="clear" title="Clear the mask and strokes">Clear</button>
    <button id="fit" title="Fit the image in the window (zoom: Ctrl+wheel, pan: space+drag or middle drag)">Fit</button>
  </div>
  <div class="group">
    <button id="run" disabled>Run</button>
    <button id="cancel" class="hidden">Cancel</button>
  </div>
</header>
<main id="main">
  <canvas id="view"></canvas>
  <div id="drop">Open an image, or drop one here.<br>Paint the part to fill, then Run.</div>
</main>
<footer>
  <progress id="progress" max="1" value="0"></progress>
  <span id="status">Ready.</span>
  <span id="compareBox" class="hidden"><label for="compare">before | after</label><input id="compare" type="range" min="0" max="1000" value="500"></span>
  <a id="download" class="button" aria-disabled="true" href="#">Download result</a>
  <a id="downloadMask" class="button" aria-disabled="true" href="#">Download mask</a>
</footer>
<script type="module" src="/app.js"></script>
</body>
</html>
`;
