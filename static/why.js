/* "Why?": what the network saw, and why (docs/protocol.md, 'why'). Draws the server's answer: the
 * 48x48 grey crop the members classified, enlarged with nearest-neighbour pixels so that each of its
 * pixels shows, the ensemble's Grad-CAM heat map over it, and each member's map beside it.
 *
 *   FerWhy.viridis(t) -> [r, g, b]          the colormap, t in [0, 1]
 *   FerWhy.draw(canvas, crop, map)          crop, map: Uint8Array(48 * 48); map null: the crop alone
 *   FerWhy.decode(base64) -> Uint8Array
 *   FerWhy.where(map) -> 'top left' ...     where a map's evidence is strongest, in words */
(function () {
  'use strict';

  var SIZE = 48;
  var HEAT_ALPHA = 0.75;  // a map's strongest pixel covers the face this much: the face stays visible under it

  // viridis (perceptually uniform, readable in grey and by most colour-blind readers), as a
  // degree-6 polynomial per channel (Matt Zucker's fit, CC0): within 5/255 of matplotlib's table,
  // which tests/test_browser.py checks.
  var C = [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832]
  ];

  function viridis(t) {
    t = Math.min(1, Math.max(0, t));
    var out = [0, 0, 0];
    for (var ch = 0; ch < 3; ch++) {
      var v = 0;
      for (var i = C.length - 1; i >= 0; i--) v = v * t + C[i][ch];  // Horner
      out[ch] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    return out;
  }

  function decode(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }

  // The crop in grey with the map blended over it, 48x48, then scaled up without smoothing.
  var small = document.createElement('canvas');
  small.width = small.height = SIZE;

  function draw(canvas, crop, map) {
    var ctx = small.getContext('2d'), img = ctx.createImageData(SIZE, SIZE), d = img.data;
    for (var i = 0; i < SIZE * SIZE; i++) {
      var g = crop[i], r = g, gg = g, b = g;
      if (map) {
        var t = map[i] / 255, a = HEAT_ALPHA * t, c = viridis(t);
        r = (1 - a) * g + a * c[0]; gg = (1 - a) * g + a * c[1]; b = (1 - a) * g + a * c[2];
      }
      d[4 * i] = r; d[4 * i + 1] = gg; d[4 * i + 2] = b; d[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    var out = canvas.getContext('2d');
    out.imageSmoothingEnabled = false;  // nearest neighbour: the 48x48 pixels stay visible
    out.clearRect(0, 0, canvas.width, canvas.height);
    out.drawImage(small, 0, 0, canvas.width, canvas.height);
  }

  // The colour scale under the maps: 0 (no evidence) to 1 (the map's strongest).
  function drawScale(canvas) {
    var ctx = canvas.getContext('2d'), w = canvas.width, h = canvas.height;
    for (var x = 0; x < w; x++) {
      var c = viridis(x / (w - 1));
      ctx.fillStyle = 'rgb(' + c.join(',') + ')';
      ctx.fillRect(x, 0, 1, h);
    }
  }

  // Where the map's mass is centred, in words (for the canvas's aria-label and the caption), in the
  // crop's own orientation.
  function where(map) {
    var sx = 0, sy = 0, s = 0;
    for (var i = 0; i < SIZE * SIZE; i++) { var v = map[i]; sx += v * (i % SIZE); sy += v * Math.floor(i / SIZE); s += v; }
    if (!s) return 'nowhere in particular';
    var x = sx / s / SIZE, y = sy / s / SIZE;
    var row = y < 0.4 ? 'upper' : y > 0.6 ? 'lower' : 'middle';
    var col = x < 0.4 ? 'left' : x > 0.6 ? 'right' : 'centre';
    return row === 'middle' && col === 'centre' ? 'the centre' : 'the ' + row + ' ' + col;
  }

  window.FerWhy = {viridis: viridis, decode: decode, draw: draw, drawScale: drawScale, where: where, SIZE: SIZE};
})();
