/* The drawing surface shared by the live page's timeline (timeline.js) and /admin's class view
 * (classview.js): a canvas sized to its CSS box at the screen's pixel ratio, cleared, with the page's
 * muted and line colours and the plot area inside a padding.
 *
 *   FerCanvas.setup(canvas, pad) -> {ctx, W, H, muted, line, x0, x1, y0, y1}, or null when the canvas
 *   is not laid out (hidden: nothing to draw) */
(function () {
  'use strict';

  function setup(canvas, pad) {
    var dpr = window.devicePixelRatio || 1;
    var W = canvas.clientWidth, H = canvas.clientHeight;
    if (!W || !H) return null;
    // resizing a canvas clears it: only when the box or the pixel ratio changed
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var css = getComputedStyle(canvas);
    return {ctx: ctx, W: W, H: H,
            muted: css.getPropertyValue('--muted').trim() || '#888',
            line: css.getPropertyValue('--line').trim() || '#ddd',
            x0: pad.left, x1: W - pad.right, y0: pad.top, y1: H - pad.bottom};
  }

  window.FerCanvas = {setup: setup};
})();
