/* ImageMedix image viewer: zoom, pan, window/level, invert, length measurement and the AI heatmap
 * layer, on a <canvas>, for the study and review pages (templates/studies/_viewer.html).
 *
 * Markup: <div class="viewer" data-viewer data-config="ID" [data-layers="ID"] [data-link="GROUP"]>
 *   ID of a json_script with {imageUrl, valuesUrl, width, height, values, windows, invert,
 *   pixelSpacing, spacingSource, label}; data-layers names a json_script with the AI layers
 *   {heatmapUrl, roi} (it sits inside #study-result, which live.js swaps when a read finishes);
 *   viewers sharing data-link zoom and pan together while the group's [data-link-toggle] is checked.
 *
 * Pixels: PNG/JPEG images are greyscale 0-255 codes. A DICOM's stored values arrive losslessly as
 * 16-bit codes packed in an RGB PNG (red = high byte, green = low byte; apps/studies/dicom.py), and
 * a code is the modality value (code + storedMin) * slope + intercept, which is what the file's
 * window centre/width are given in. Window/level maps values to grey with the linear function
 * y = (x - (centre - width / 2)) / width, through a lookup table over the codes.
 *
 * The state is mirrored on the viewer element for tests and tools: data-scale (device pixels per
 * image pixel), data-zoom (relative to "fit"), data-center-x / -y (the image point in the middle,
 * as fractions), data-pan-x / data-pan-y (device pixels), data-window-center, data-window-width,
 * data-invert, data-heatmap, data-tool, data-measurements (JSON of lengths), data-ready.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("has-js"); // shows the viewer's tools
  var MAX_SCALE = 32;
  var ZOOM_STEP = 1.25;
  var HEATMAP_MAX_SIDE = 512;
  var groups = {};

  // The jet colour map of apps/diagnosis/pipeline/cam.py, as 256 RGB triples.
  var JET = (function () {
    var lut = new Uint8Array(256 * 3);
    function ch(x, k) {
      return Math.round(Math.max(0, Math.min(1, 1.5 - Math.abs(4 * x - k))) * 255);
    }
    for (var i = 0; i < 256; i += 1) {
      var x = i / 255;
      lut[i * 3] = ch(x, 3);
      lut[i * 3 + 1] = ch(x, 2);
      lut[i * 3 + 2] = ch(x, 1);
    }
    return lut;
  })();

  function readJson(id) {
    var el = id && document.getElementById(id);
    if (!el) {
      return null;
    }
    try {
      return JSON.parse(el.textContent);
    } catch (e) {
      return null;
    }
  }

  function fetchBitmap(url) {
    return fetch(url, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.blob();
      })
      .then(function (blob) {
        // No colour management: the codes must arrive exactly as stored.
        return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
      });
  }

  function pixelsOf(bitmap, width, height) {
    var canvas = document.createElement("canvas");
    canvas.width = width || bitmap.width;
    canvas.height = height || bitmap.height;
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return ctx.getImageData(0, 0, canvas.width, canvas.height);
  }

  function round(value, digits) {
    var f = Math.pow(10, digits);
    return Math.round(value * f) / f;
  }

  function Viewer(root) {
    this.root = root;
    this.config = readJson(root.getAttribute("data-config")) || {};
    this.stage = root.querySelector(".viewer-stage");
    this.canvas = root.querySelector(".viewer-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.statusEl = root.querySelector(".viewer-status");
    this.presetSelect = root.querySelector("[data-preset]");
    this.heatToggle = root.querySelector("[data-heatmap-toggle]");
    this.heatOpacity = root.querySelector("[data-heatmap-opacity]");
    this.heatControls = root.querySelector(".viewer-heatmap");
    this.tool = "pan";
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitted = true;
    this.invert = !!this.config.invert;
    this.center = 127.5;
    this.width = 255;
    this.heat = null;
    this.roi = null;
    this.heatUrl = "";
    this.measurements = [];
    this.draft = null;
    this.pointers = {};
    this.gesture = null;
    this.frame = 0;
    this.ready = false;
    this.image = document.createElement("canvas"); // the windowed image, one canvas pixel per image pixel
    this.presets = [];
    this.bind();
    this.load();
  }

  Viewer.prototype.load = function () {
    var self = this;
    var cfg = this.config;
    var url = cfg.valuesUrl || cfg.imageUrl;
    this.say("Loading the image…");
    fetchBitmap(url)
      .then(function (bitmap) {
        self.takePixels(pixelsOf(bitmap), !!cfg.valuesUrl);
        self.ready = true;
        self.root.setAttribute("data-ready", "true");
        self.resize();
        self.loadLayers();
        self.changed(false, self.describe());
      })
      .catch(function () {
        self.root.setAttribute("data-ready", "error");
        self.say("The image could not be shown in the viewer. Reload the page to try again.");
      });
  };

  // Codes and the code → value mapping, from the decoded PNG/JPEG or the packed DICOM values.
  Viewer.prototype.takePixels = function (data, packed) {
    var n = data.width * data.height;
    var src = data.data;
    var codes = packed ? new Uint16Array(n) : new Uint8Array(n);
    var maxCode = 0;
    for (var i = 0, j = 0; i < n; i += 1, j += 4) {
      var code = packed ? (src[j] << 8) | src[j + 1] : Math.round(0.299 * src[j] + 0.587 * src[j + 1] + 0.114 * src[j + 2]);
      codes[i] = code;
      if (code > maxCode) {
        maxCode = code;
      }
    }
    var v = this.config.values || {};
    this.codes = codes;
    this.maxCode = packed ? maxCode : 255;
    this.base = packed ? v.storedMin || 0 : 0;
    this.slope = packed ? (v.slope === undefined ? 1 : v.slope) : 1;
    this.intercept = packed ? v.intercept || 0 : 0;
    this.imgW = data.width;
    this.imgH = data.height;
    this.image.width = data.width;
    this.image.height = data.height;
    this.imageData = this.image.getContext("2d").createImageData(data.width, data.height);
    this.buildPresets();
    var first = this.presets[0];
    this.setWindow(first.center, first.width, false);
    if (this.presetSelect) {
      this.presetSelect.value = "0";
    }
  };

  Viewer.prototype.valueOf = function (code) {
    return (code + this.base) * this.slope + this.intercept;
  };

  // The file's windows first (the first is the initial one), then the page's presets, then "Auto".
  Viewer.prototype.buildPresets = function () {
    var presets = (this.config.windows || []).slice();
    presets.push(this.autoWindow());
    this.presets = presets;
    var select = this.presetSelect;
    if (!select) {
      return;
    }
    select.textContent = "";
    presets.forEach(function (p, index) {
      var option = document.createElement("option");
      option.value = String(index);
      option.textContent = p.name + " (W " + round(p.width, 1) + " / L " + round(p.center, 1) + ")";
      select.appendChild(option);
    });
    var custom = document.createElement("option");
    custom.value = "";
    custom.textContent = "Custom";
    custom.hidden = true;
    select.appendChild(custom);
  };

  // The 0.5-99.5 % range of the values, as decode.py windows a DICOM without window values.
  Viewer.prototype.autoWindow = function () {
    var counts = new Uint32Array(this.maxCode + 1);
    var codes = this.codes;
    var step = Math.max(1, Math.floor(codes.length / 262144));
    var total = 0;
    for (var i = 0; i < codes.length; i += step) {
      counts[codes[i]] += 1;
      total += 1;
    }
    var lowTarget = total * 0.005;
    var highTarget = total * 0.995;
    var seen = 0;
    var low = 0;
    var high = this.maxCode;
    var lowFound = false;
    for (var c = 0; c <= this.maxCode; c += 1) {
      seen += counts[c];
      if (!lowFound && seen > lowTarget) {
        low = c;
        lowFound = true;
      }
      if (seen >= highTarget) {
        high = c;
        break;
      }
    }
    if (high <= low) {
      low = 0;
      high = Math.max(1, this.maxCode);
    }
    var lo = this.valueOf(low);
    var hi = this.valueOf(high);
    return { name: "Auto (0.5–99.5 %)", center: (lo + hi) / 2, width: Math.max(Math.abs(hi - lo), 1e-3) };
  };

  Viewer.prototype.setWindow = function (center, width, custom) {
    var span = Math.abs(this.valueOf(this.maxCode) - this.valueOf(0)) || 1;
    this.width = Math.max(span / 1000, Math.min(width, span * 4));
    this.center = center;
    if (custom && this.presetSelect) {
      this.presetSelect.value = "";
    }
    this.renderImage();
  };

  // Window, level and invert → the 8-bit image, through a lookup table over the codes.
  Viewer.prototype.renderImage = function () {
    if (!this.codes) {
      return;
    }
    var lut = new Uint32Array(this.maxCode + 1);
    var low = this.center - this.width / 2;
    for (var c = 0; c <= this.maxCode; c += 1) {
      var y = (this.valueOf(c) - low) / this.width;
      var g = Math.round(Math.max(0, Math.min(1, y)) * 255);
      if (this.invert) {
        g = 255 - g;
      }
      lut[c] = 0xff000000 | (g << 16) | (g << 8) | g; // ABGR in little-endian memory
    }
    var out = new Uint32Array(this.imageData.data.buffer);
    var codes = this.codes;
    for (var i = 0; i < codes.length; i += 1) {
      out[i] = lut[codes[i]];
    }
    this.image.getContext("2d").putImageData(this.imageData, 0, 0);
    this.requestDraw();
  };

  // --- the AI layer ---------------------------------------------------------------------------

  Viewer.prototype.loadLayers = function () {
    var layers = readJson(this.root.getAttribute("data-layers"));
    var url = layers && layers.heatmapUrl;
    if (this.heatControls) {
      this.heatControls.hidden = !url;
    }
    if (!url || url === this.heatUrl) {
      return;
    }
    var self = this;
    this.heatUrl = url;
    this.roi = layers.roi || null;
    fetchBitmap(url)
      .then(function (bitmap) {
        self.heat = self.colourHeatmap(bitmap);
        self.root.setAttribute("data-heatmap-ready", "true");
        self.requestDraw();
      })
      .catch(function () {
        self.say("The AI heatmap could not be loaded.");
      });
  };

  // The grey map (network resolution) upsampled smoothly, then coloured with jet; each pixel's
  // opacity grows with the square root of its heat, so cold regions stay see-through (cam.py).
  Viewer.prototype.colourHeatmap = function (bitmap) {
    var ratio = Math.min(1, HEATMAP_MAX_SIDE / Math.max(this.imgW, this.imgH));
    var data = pixelsOf(bitmap, Math.max(1, Math.round(this.imgW * ratio)), Math.max(1, Math.round(this.imgH * ratio)));
    var px = data.data;
    for (var j = 0; j < px.length; j += 4) {
      var h = px[j];
      px[j] = JET[h * 3];
      px[j + 1] = JET[h * 3 + 1];
      px[j + 2] = JET[h * 3 + 2];
      px[j + 3] = Math.round(Math.sqrt(h / 255) * 255);
    }
    var canvas = document.createElement("canvas");
    canvas.width = data.width;
    canvas.height = data.height;
    canvas.getContext("2d").putImageData(data, 0, 0);
    return canvas;
  };

  Viewer.prototype.heatmapOn = function () {
    return !!(this.heatToggle && this.heatToggle.checked && this.heat);
  };

  Viewer.prototype.opacity = function () {
    var value = this.heatOpacity ? parseInt(this.heatOpacity.value, 10) : 45;
    return Math.max(0, Math.min(100, isNaN(value) ? 45 : value)) / 100;
  };

  // --- geometry ---------------------------------------------------------------------------------

  Viewer.prototype.fitScale = function () {
    return Math.min(this.canvas.width / this.imgW, this.canvas.height / this.imgH);
  };

  Viewer.prototype.fit = function () {
    var s = this.fitScale();
    this.scale = s;
    this.tx = (this.canvas.width - this.imgW * s) / 2;
    this.ty = (this.canvas.height - this.imgH * s) / 2;
    this.fitted = true;
  };

  Viewer.prototype.zoomAt = function (factor, x, y) {
    var s = Math.max(this.fitScale() / 4, Math.min(MAX_SCALE, this.scale * factor));
    this.tx = x - ((x - this.tx) * s) / this.scale;
    this.ty = y - ((y - this.ty) * s) / this.scale;
    this.scale = s;
    this.fitted = false;
  };

  Viewer.prototype.zoomCentred = function (factor) {
    this.zoomAt(factor, this.canvas.width / 2, this.canvas.height / 2);
  };

  Viewer.prototype.oneToOne = function () {
    this.zoomCentred(1 / this.scale);
  };

  Viewer.prototype.panBy = function (dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
  };

  // Zoom relative to "fit" and the image point at the centre: what linked viewers share.
  Viewer.prototype.relativeView = function () {
    return {
      zoom: this.scale / this.fitScale(),
      cx: (this.canvas.width / 2 - this.tx) / this.scale / this.imgW,
      cy: (this.canvas.height / 2 - this.ty) / this.scale / this.imgH,
    };
  };

  Viewer.prototype.applyView = function (view) {
    if (!this.ready) {
      return;
    }
    this.scale = view.zoom * this.fitScale();
    this.tx = this.canvas.width / 2 - view.cx * this.imgW * this.scale;
    this.ty = this.canvas.height / 2 - view.cy * this.imgH * this.scale;
    this.fitted = false;
    this.changed(false);
  };

  Viewer.prototype.resize = function () {
    var dpr = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(this.stage.clientWidth * dpr));
    var h = Math.max(1, Math.round(this.stage.clientHeight * dpr));
    if (w === this.canvas.width && h === this.canvas.height && this.ready && !this.fitted) {
      return;
    }
    var view = this.ready && !this.fitted ? this.relativeView() : null;
    this.canvas.width = w;
    this.canvas.height = h;
    if (!this.ready) {
      return;
    }
    if (view) {
      this.scale = view.zoom * this.fitScale();
      this.tx = w / 2 - view.cx * this.imgW * this.scale;
      this.ty = h / 2 - view.cy * this.imgH * this.scale;
    } else {
      this.fit();
    }
    this.changed(false);
  };

  Viewer.prototype.toImage = function (event) {
    var rect = this.canvas.getBoundingClientRect();
    var dpr = this.canvas.width / rect.width;
    var x = (event.clientX - rect.left) * dpr;
    var y = (event.clientY - rect.top) * dpr;
    return { x: x, y: y, ix: (x - this.tx) / this.scale, iy: (y - this.ty) / this.scale };
  };

  // --- measurement ----------------------------------------------------------------------------------

  Viewer.prototype.lengthOf = function (m) {
    var dx = m.x1 - m.x0;
    var dy = m.y1 - m.y0;
    var spacing = this.config.pixelSpacing; // [row spacing (y), column spacing (x)] in mm
    if (spacing) {
      return { value: Math.sqrt(Math.pow(dx * spacing[1], 2) + Math.pow(dy * spacing[0], 2)), unit: "mm" };
    }
    return { value: Math.sqrt(dx * dx + dy * dy), unit: "px" };
  };

  Viewer.prototype.lengthText = function (m) {
    var l = this.lengthOf(m);
    return l.unit === "mm" ? l.value.toFixed(1) + " mm" : Math.round(l.value) + " px";
  };

  // --- drawing --------------------------------------------------------------------------------------

  Viewer.prototype.requestDraw = function () {
    var self = this;
    if (this.frame) {
      return;
    }
    this.frame = window.requestAnimationFrame(function () {
      self.frame = 0;
      self.draw();
    });
  };

  Viewer.prototype.draw = function () {
    var ctx = this.ctx;
    var c = this.canvas;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, c.width, c.height);
    if (!this.ready) {
      return;
    }
    var s = this.scale;
    ctx.setTransform(s, 0, 0, s, this.tx, this.ty);
    ctx.imageSmoothingEnabled = s < 4; // far in, show the pixels as they are
    ctx.drawImage(this.image, 0, 0);
    if (this.heatmapOn()) {
      ctx.globalAlpha = this.opacity();
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(this.heat, 0, 0, this.imgW, this.imgH);
      ctx.globalAlpha = 1;
      if (this.roi) {
        ctx.setLineDash([6 / s, 4 / s]);
        ctx.lineWidth = 2 / s;
        ctx.strokeStyle = "#fff";
        ctx.strokeRect(this.roi[0], this.roi[1], this.roi[2] - this.roi[0], this.roi[3] - this.roi[1]);
        ctx.setLineDash([]);
      }
    }
    var dpr = window.devicePixelRatio || 1;
    var lines = this.measurements.concat(this.draft ? [this.draft] : []);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.font = 13 * dpr + "px system-ui, sans-serif";
    ctx.lineWidth = 2 * dpr;
    for (var i = 0; i < lines.length; i += 1) {
      var m = lines[i];
      var x0 = m.x0 * s + this.tx;
      var y0 = m.y0 * s + this.ty;
      var x1 = m.x1 * s + this.tx;
      var y1 = m.y1 * s + this.ty;
      ctx.strokeStyle = "#ffd400";
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      var label = this.lengthText(m);
      ctx.fillStyle = "rgba(0,0,0,0.7)";
      ctx.fillRect(x1 + 6 * dpr, y1 - 16 * dpr, ctx.measureText(label).width + 8 * dpr, 20 * dpr);
      ctx.fillStyle = "#ffd400";
      ctx.fillText(label, x1 + 10 * dpr, y1 - 1 * dpr);
    }
    // Corner read-out, as on a reading station.
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillText(this.readout(), 8 * dpr, c.height - 8 * dpr);
  };

  Viewer.prototype.readout = function () {
    return (
      "W " + round(this.width, 1) + "  L " + round(this.center, 1) + "  ·  " + Math.round(this.scale * 100) + " %" +
      (this.invert ? "  ·  inverted" : "")
    );
  };

  Viewer.prototype.describe = function () {
    var parts = ["Zoom " + Math.round(this.scale * 100) + " %", "window " + round(this.width, 1), "level " + round(this.center, 1)];
    if (this.invert) {
      parts.push("inverted");
    }
    if (this.heatmapOn()) {
      parts.push("AI heatmap on at " + Math.round(this.opacity() * 100) + " %");
    }
    if (this.measurements.length) {
      var last = this.measurements[this.measurements.length - 1];
      parts.push("last length " + this.lengthText(last));
    }
    return parts.join(", ") + ".";
  };

  Viewer.prototype.say = function (text) {
    if (this.statusEl) {
      this.statusEl.textContent = text;
    }
  };

  // After every change: mirror the state, redraw, tell linked viewers (when the user moved this
  // one), and put the description in the status line when a gesture ends.
  Viewer.prototype.changed = function (fromUser, announcement) {
    var r = this.root;
    var view = this.relativeView();
    r.setAttribute("data-scale", this.scale.toFixed(4));
    r.setAttribute("data-zoom", view.zoom.toFixed(4));
    r.setAttribute("data-center-x", view.cx.toFixed(4));
    r.setAttribute("data-center-y", view.cy.toFixed(4));
    r.setAttribute("data-pan-x", this.tx.toFixed(1));
    r.setAttribute("data-pan-y", this.ty.toFixed(1));
    r.setAttribute("data-window-center", String(round(this.center, 3)));
    r.setAttribute("data-window-width", String(round(this.width, 3)));
    r.setAttribute("data-invert", String(this.invert));
    r.setAttribute("data-heatmap", this.heatmapOn() ? "on" : "off");
    r.setAttribute("data-tool", this.tool);
    var self = this;
    r.setAttribute(
      "data-measurements",
      JSON.stringify(
        this.measurements.map(function (m) {
          var l = self.lengthOf(m);
          return { length: round(l.value, 2), unit: l.unit };
        })
      )
    );
    this.requestDraw();
    if (fromUser) {
      this.broadcast();
    }
    if (announcement) {
      this.say(announcement);
    }
  };

  Viewer.prototype.broadcast = function () {
    var name = this.root.getAttribute("data-link");
    var group = name && groups[name];
    if (!group || !group.linked()) {
      return;
    }
    var view = this.relativeView();
    group.viewers.forEach(function (other) {
      if (other !== this) {
        other.applyView(view);
      }
    }, this);
  };

  // --- input --------------------------------------------------------------------------------------

  Viewer.prototype.setTool = function (tool) {
    this.tool = tool;
    Array.prototype.forEach.call(this.root.querySelectorAll("[data-tool-button]"), function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-tool-button") === tool));
    });
    this.stage.setAttribute("data-active-tool", tool);
    this.changed(false, { pan: "Pan tool", window: "Window/level tool", measure: "Measure tool" }[tool] + " selected.");
  };

  Viewer.prototype.action = function (name) {
    if (!this.ready) {
      return;
    }
    switch (name) {
      case "zoom-in":
        this.zoomCentred(ZOOM_STEP);
        break;
      case "zoom-out":
        this.zoomCentred(1 / ZOOM_STEP);
        break;
      case "fit":
        this.fit();
        break;
      case "one-to-one":
        this.oneToOne();
        break;
      case "invert":
        this.invert = !this.invert;
        this.renderImage();
        break;
      case "reset":
        this.invert = !!this.config.invert;
        this.measurements = [];
        this.setWindow(this.presets[0].center, this.presets[0].width, false);
        if (this.presetSelect) {
          this.presetSelect.value = "0";
        }
        this.fit();
        break;
      case "clear":
        this.measurements = [];
        this.draft = null;
        break;
      case "fullscreen":
        this.toggleFullscreen();
        return;
      default:
        return;
    }
    this.syncPressed();
    this.changed(true, this.describe());
  };

  Viewer.prototype.syncPressed = function () {
    var invert = this.root.querySelector('[data-action="invert"]');
    if (invert) {
      invert.setAttribute("aria-pressed", String(this.invert));
    }
  };

  Viewer.prototype.toggleFullscreen = function () {
    if (document.fullscreenElement === this.root) {
      document.exitFullscreen();
    } else if (this.root.requestFullscreen) {
      this.root.requestFullscreen().catch(function () {});
    }
  };

  Viewer.prototype.onKey = function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)) {
      return;
    }
    var key = event.key;
    var wl = this.tool === "window";
    var arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (arrows[key] && this.ready) {
      var d = arrows[key];
      if (wl) {
        // Left/right: narrower/wider window; up/down: brighter/darker (lower/higher level).
        this.setWindow(this.center + d[1] * this.width * 0.05, this.width * (d[0] ? Math.pow(1.1, d[0]) : 1), true);
      } else {
        var stepPx = (event.shiftKey ? 0.25 : 0.05) * Math.min(this.canvas.width, this.canvas.height);
        this.panBy(-d[0] * stepPx, -d[1] * stepPx);
      }
      this.changed(true, this.describe());
      event.preventDefault();
      return;
    }
    var map = {
      "+": "zoom-in",
      "=": "zoom-in",
      "-": "zoom-out",
      0: "fit",
      1: "one-to-one",
      i: "invert",
      r: "reset",
      f: "fullscreen",
      Delete: "clear",
      Backspace: "clear",
    };
    var tools = { p: "pan", w: "window", m: "measure" };
    var lower = key.length === 1 ? key.toLowerCase() : key;
    if (map[lower]) {
      this.action(map[lower]);
    } else if (tools[lower]) {
      this.setTool(tools[lower]);
    } else if (lower === "h" && this.heatToggle && this.heatControls && !this.heatControls.hidden) {
      this.heatToggle.checked = !this.heatToggle.checked;
      this.changed(false, this.describe());
    } else if (key === "Escape" && this.draft) {
      this.draft = null;
      this.gesture = null;
      this.changed(false);
    } else {
      return;
    }
    event.preventDefault();
  };

  Viewer.prototype.onPointerDown = function (event) {
    if (!this.ready) {
      return;
    }
    this.canvas.setPointerCapture(event.pointerId);
    var p = this.toImage(event);
    this.pointers[event.pointerId] = p;
    var ids = Object.keys(this.pointers);
    if (ids.length === 2) {
      this.draft = null;
      this.gesture = { kind: "pinch" };
      return;
    }
    // Right button: window/level, middle button: pan, whatever the tool.
    var kind = event.button === 2 ? "window" : event.button === 1 ? "pan" : this.tool;
    this.gesture = { kind: kind, x: p.x, y: p.y, center: this.center, width: this.width };
    if (kind === "measure") {
      this.draft = { x0: p.ix, y0: p.iy, x1: p.ix, y1: p.iy };
    }
    event.preventDefault();
  };

  Viewer.prototype.onPointerMove = function (event) {
    if (!this.pointers[event.pointerId] || !this.gesture) {
      return;
    }
    var p = this.toImage(event);
    var previous = this.pointers[event.pointerId];
    this.pointers[event.pointerId] = p;
    var g = this.gesture;
    if (g.kind === "pinch") {
      var ids = Object.keys(this.pointers);
      if (ids.length < 2) {
        return;
      }
      var other = this.pointers[ids[0] === String(event.pointerId) ? ids[1] : ids[0]];
      var before = Math.hypot(previous.x - other.x, previous.y - other.y);
      var after = Math.hypot(p.x - other.x, p.y - other.y);
      var midX = (p.x + other.x) / 2;
      var midY = (p.y + other.y) / 2;
      this.panBy((p.x - previous.x) / 2, (p.y - previous.y) / 2);
      if (before > 0) {
        this.zoomAt(after / before, midX, midY);
      }
      this.changed(true);
    } else if (g.kind === "pan") {
      this.panBy(p.x - previous.x, p.y - previous.y);
      this.changed(true);
    } else if (g.kind === "window") {
      // Drag right: wider window; drag down: higher level (darker), as on most reading stations.
      var span = Math.abs(this.valueOf(this.maxCode) - this.valueOf(0)) || 1;
      var per = span / Math.max(200, Math.min(this.canvas.width, this.canvas.height));
      this.setWindow(g.center + (p.y - g.y) * per, g.width + (p.x - g.x) * per, true);
      this.changed(false);
    } else if (g.kind === "measure") {
      this.draft.x1 = p.ix;
      this.draft.y1 = p.iy;
      this.changed(false);
    }
  };

  Viewer.prototype.onPointerUp = function (event) {
    if (!this.pointers[event.pointerId]) {
      return;
    }
    delete this.pointers[event.pointerId];
    var g = this.gesture;
    if (g && g.kind === "pinch" && Object.keys(this.pointers).length) {
      return; // one finger still down: wait for it
    }
    this.gesture = null;
    if (g && g.kind === "measure" && this.draft) {
      var m = this.draft;
      this.draft = null;
      if (Math.hypot(m.x1 - m.x0, m.y1 - m.y0) * this.scale > 3) {
        this.measurements.push(m);
      }
    }
    this.pointers = {};
    this.changed(false, this.describe());
  };

  Viewer.prototype.bind = function () {
    var self = this;
    var c = this.canvas;
    c.addEventListener("pointerdown", function (e) {
      self.stage.focus({ preventScroll: true });
      self.onPointerDown(e);
    });
    c.addEventListener("pointermove", function (e) {
      self.onPointerMove(e);
    });
    c.addEventListener("pointerup", function (e) {
      self.onPointerUp(e);
    });
    c.addEventListener("pointercancel", function (e) {
      self.onPointerUp(e);
    });
    c.addEventListener("contextmenu", function (e) {
      e.preventDefault();
    });
    c.addEventListener(
      "wheel",
      function (e) {
        if (!self.ready) {
          return;
        }
        e.preventDefault();
        var p = self.toImage(e);
        var delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
        self.zoomAt(Math.exp(-delta * 0.0015), p.x, p.y);
        self.changed(true);
        window.clearTimeout(self.wheelTimer);
        self.wheelTimer = window.setTimeout(function () {
          self.say(self.describe());
        }, 250);
      },
      { passive: false }
    );
    this.root.addEventListener("keydown", function (e) {
      self.onKey(e);
    });
    this.root.addEventListener("click", function (e) {
      var button = e.target.closest("button");
      if (!button || !self.root.contains(button)) {
        return;
      }
      if (button.hasAttribute("data-tool-button")) {
        self.setTool(button.getAttribute("data-tool-button"));
      } else if (button.hasAttribute("data-action")) {
        self.action(button.getAttribute("data-action"));
      }
    });
    if (this.presetSelect) {
      this.presetSelect.addEventListener("change", function () {
        var p = self.presets[parseInt(self.presetSelect.value, 10)];
        if (p) {
          self.setWindow(p.center, p.width, false);
          self.changed(false, self.describe());
        }
      });
    }
    if (this.heatToggle) {
      this.heatToggle.addEventListener("change", function () {
        self.changed(false, self.describe());
      });
    }
    if (this.heatOpacity) {
      var output = this.root.querySelector("[data-heatmap-opacity-value]");
      this.heatOpacity.addEventListener("input", function () {
        if (output) {
          output.textContent = Math.round(self.opacity() * 100) + " %";
        }
        self.changed(false);
      });
      this.heatOpacity.addEventListener("change", function () {
        self.say(self.describe());
      });
    }
    document.addEventListener("fullscreenchange", function () {
      self.root.classList.toggle("is-fullscreen", document.fullscreenElement === self.root);
      self.resize();
    });
    document.addEventListener("imagemedix:study-result", function () {
      if (self.ready) {
        self.loadLayers();
      }
    });
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        self.resize();
      }).observe(this.stage);
    }
    window.addEventListener("resize", function () {
      self.resize();
    });
  };

  // --- linked groups ---------------------------------------------------------------------------------

  function Group(name) {
    this.name = name;
    this.viewers = [];
    this.toggle = document.querySelector('[data-link-toggle="' + name + '"]');
  }

  Group.prototype.linked = function () {
    return !this.toggle || this.toggle.checked;
  };

  Array.prototype.forEach.call(document.querySelectorAll("[data-viewer]"), function (root) {
    var viewer = new Viewer(root);
    root.imagemedixViewer = viewer;
    var name = root.getAttribute("data-link");
    if (name) {
      groups[name] = groups[name] || new Group(name);
      groups[name].viewers.push(viewer);
    }
  });
  Object.keys(groups).forEach(function (name) {
    var group = groups[name];
    if (group.toggle) {
      group.toggle.addEventListener("change", function () {
        if (group.linked() && group.viewers[0]) {
          group.viewers[0].broadcast();
        }
      });
    }
  });
})();
