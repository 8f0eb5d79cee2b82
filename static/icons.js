/* Expression icons drawn from a few SVG paths, the same shapes inline in the page (<svg>) and on the
 * overlay canvas (Path2D): nothing depends on the emoji fonts a system happens to have (Debian's
 * Chromium shows the disgust emoji as an empty box). One colour per class, shared with the bars,
 * the votes and the timeline. */
(function () {
  'use strict';

  var COLORS = {
    angry: '#e5484d', disgust: '#30a46c', fear: '#8e4ec6', happy: '#f5a524',
    sad: '#3e63dd', surprise: '#12a594', neutral: '#8b8d98'
  };
  var OTHER = '#6e56cf';  // a label this page does not know (another models folder): the accent colour
  var INK = '#1c2024';    // features: dark on every class colour (>= 3:1, as for any graphic)
  var SVG_NS = 'http://www.w3.org/2000/svg';

  function dot(x, y, r) {  // a filled circle as path data (Path2D and <path> both take it)
    return 'M' + (x - r) + ' ' + y + 'a' + r + ' ' + r + ' 0 1 0 ' + 2 * r + ' 0a' + r + ' ' + r + ' 0 1 0 ' + -2 * r + ' 0';
  }
  function eyes(y, r) { return dot(8.6, y, r) + dot(15.4, y, r); }

  // 24x24, face circle r 11 at (12, 12): brows and mouths stroked, eyes and open mouths filled.
  var FACES = {
    angry: {stroke: 'M6.3 7.2l3.8 2M17.7 7.2l-3.8 2M8.6 17q3.4-2.8 6.8 0', fill: eyes(11.4, 1.25)},
    disgust: {stroke: 'M6.6 8.2l3.4-.5M14 7.3l3.4 1.3M7.2 11h3M13.8 11h3M7.4 16.4q1.15-1.3 2.3 0t2.3 0t2.3 0t2.3 0',
      fill: ''},
    fear: {stroke: 'M6.6 7.2q1.7-1.5 3.4-.3M17.4 7.2q-1.7-1.5-3.4-.3',
      fill: eyes(10.8, 1.55) + 'M8.6 15.2h6.8a1.3 1.3 0 0 1 1.3 1.3v.6a1.3 1.3 0 0 1-1.3 1.3h-6.8a1.3 1.3 0 0 1-1.3-1.3v-.6a1.3 1.3 0 0 1 1.3-1.3z'},
    happy: {stroke: 'M7 10.8q1.6-2 3.2 0M13.8 10.8q1.6-2 3.2 0', fill: 'M7 13.6h10a5 5 0 0 1-10 0z'},
    sad: {stroke: 'M6.6 8.8l3.4-1.6M17.4 8.8l-3.4-1.6M8.4 17.6q3.6-3.4 7.2 0', fill: eyes(11.2, 1.25)},
    surprise: {stroke: 'M6.6 7q1.7-1.5 3.4 0M14 7q1.7-1.5 3.4 0', fill: eyes(10.6, 1.35) + 'M10 16.4a2 2.5 0 1 0 4 0a2 2.5 0 1 0-4 0'},
    neutral: {stroke: 'M8.6 16.2h6.8', fill: eyes(10.8, 1.25)},
    // states of the page rather than classes: drawn as outlines in the text's muted colour
    waiting: {ring: true, stroke: '', fill: eyes(10.8, 1.25)},
    noface: {ring: 'dashed', stroke: '', fill: ''},
    camera: {ring: false, stroke: 'M3.5 8.6a1.6 1.6 0 0 1 1.6-1.6h2.7l1.6-2.2h5.2l1.6 2.2h2.7a1.6 1.6 0 0 1 1.6 1.6v8.8' +
      'a1.6 1.6 0 0 1-1.6 1.6h-13.8a1.6 1.6 0 0 1-1.6-1.6zM9 13.2a3 3 0 1 0 6 0a3 3 0 1 0-6 0M3 3.5l18 17', fill: ''}
  };
  var GENERIC = {stroke: 'M8.6 16.2h6.8', fill: eyes(10.8, 1.25)};

  function color(label) { return COLORS[label] || OTHER; }
  function shape(name) { return FACES[name] || GENERIC; }

  function el(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  // An inline <svg> for a class (a coloured face) or a page state ('waiting', 'noface', 'camera').
  function svg(name) {
    var f = shape(name), state = f.ring !== undefined;
    var s = el('svg', {viewBox: '0 0 24 24', 'class': 'face-icon' + (state ? ' face-state' : ''),
      'aria-hidden': 'true', focusable: 'false', 'data-icon': name});
    var ink = state ? 'currentColor' : INK;
    if (!state) s.appendChild(el('circle', {cx: 12, cy: 12, r: 11, fill: color(name)}));
    else if (f.ring) s.appendChild(el('circle', {cx: 12, cy: 12, r: 10.2, fill: 'none', stroke: ink, 'stroke-width': 1.6,
      'stroke-dasharray': f.ring === 'dashed' ? '3.2 2.6' : 'none'}));
    if (f.stroke) s.appendChild(el('path', {d: f.stroke, fill: 'none', stroke: ink, 'stroke-width': 1.7,
      'stroke-linecap': 'round', 'stroke-linejoin': 'round'}));
    if (f.fill) s.appendChild(el('path', {d: f.fill, fill: ink}));
    return s;
  }

  // The class's face on a canvas, in a size x size square at (x, y): a white face with dark features,
  // which reads on the class-coloured tag. Returns false (drawing nothing) without Path2D, so the
  // caller leaves no gap for it.
  function draw(ctx, name, x, y, size) {
    if (typeof Path2D !== 'function') return false;
    var f = shape(name);
    ctx.save();
    ctx.translate(x, y);
    ctx.scale(size / 24, size / 24);
    ctx.beginPath();
    ctx.arc(12, 12, 11, 0, 2 * Math.PI);
    ctx.fillStyle = '#fff';
    ctx.fill();
    ctx.strokeStyle = ctx.fillStyle = INK;
    ctx.lineWidth = 1.9;
    ctx.lineCap = ctx.lineJoin = 'round';
    if (f.stroke) ctx.stroke(new Path2D(f.stroke));
    if (f.fill) ctx.fill(new Path2D(f.fill));
    ctx.restore();
    return true;
  }

  window.FerIcons = {color: color, svg: svg, draw: draw, names: Object.keys(COLORS)};
})();
