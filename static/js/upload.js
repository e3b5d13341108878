/* ImageMedix upload page: drag-and-drop, preview before submit, progress while sending.
 *
 * Without JavaScript the form posts normally. With it, the file is sent by XHR (header
 * X-Requested-With) so the upload progress can be shown; the server answers JSON:
 * {redirect: url} on success, {errors: [{message, target}], duplicate} with a 400 when refused
 * (409 when the patient already has this exact file: the page then asks before uploading again).
 * PNG/JPEG are previewed in the browser; DICOM is shown after upload (browsers cannot draw it).
 */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) {
    return;
  }
  var input = form.querySelector('input[type="file"]');
  var zone = document.getElementById("dropzone");
  var preview = document.getElementById("preview");
  var previewImg = document.getElementById("preview-img");
  var previewText = document.getElementById("preview-text");
  var errors = document.getElementById("upload-errors");
  var progressWrap = document.getElementById("progress-wrap");
  var progress = document.getElementById("upload-progress");
  var progressText = document.getElementById("progress-text");
  var submit = document.getElementById("upload-submit");
  var objectUrl = null;

  // Problems go in an error summary at the top of the form (as the server renders it:
  // templates/_error_summary.html), one link per field; forms.js focuses it.
  function showErrors(items) {
    errors.textContent = "";
    if (!items || !items.length) {
      return;
    }
    var box = document.createElement("div");
    box.className = "error-summary";
    box.setAttribute("role", "alert");
    box.setAttribute("tabindex", "-1");
    box.setAttribute("data-error-summary", "");
    box.setAttribute("aria-labelledby", "error-summary-title");
    var title = document.createElement("h2");
    title.id = "error-summary-title";
    title.textContent = "There is a problem";
    box.appendChild(title);
    var list = document.createElement("ul");
    items.forEach(function (item) {
      var li = document.createElement("li");
      if (item.target) {
        var a = document.createElement("a");
        a.href = "#" + item.target;
        a.setAttribute("data-error-target", item.target);
        a.textContent = item.message;
        li.appendChild(a);
      } else {
        li.textContent = item.message;
      }
      list.appendChild(li);
    });
    box.appendChild(list);
    errors.appendChild(box);
    document.dispatchEvent(new CustomEvent("imagemedix:errors"));
  }

  function showError(text) {
    showErrors(text ? [{ message: text, target: "" }] : []);
  }

  // The same file is already on record for this patient: ask before uploading it again.
  function askAboutDuplicate() {
    if (document.getElementById("id_confirm_duplicate")) {
      return;
    }
    var box = document.createElement("div");
    box.className = "field duplicate-question";
    var row = document.createElement("span");
    row.className = "checkbox-row";
    var check = document.createElement("input");
    check.type = "checkbox";
    check.name = "confirm_duplicate";
    check.id = "id_confirm_duplicate";
    var label = document.createElement("label");
    label.htmlFor = check.id;
    label.textContent = "Upload this file again";
    row.appendChild(check);
    row.appendChild(label);
    box.appendChild(row);
    preview.parentNode.insertBefore(box, preview);
  }

  function sizeText(bytes) {
    if (bytes < 1024 * 1024) {
      return Math.max(1, Math.round(bytes / 1024)) + " KB";
    }
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function sniff(file, callback) {
    // Read the first 132 bytes: the magic bytes decide the format, as on the server.
    var reader = new FileReader();
    reader.onload = function () {
      var b = new Uint8Array(reader.result);
      if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
        callback("png");
      } else if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
        callback("jpeg");
      } else if (b.length >= 132 && String.fromCharCode(b[128], b[129], b[130], b[131]) === "DICM") {
        callback("dicom");
      } else {
        callback(null);
      }
    };
    reader.onerror = function () {
      callback(null);
    };
    reader.readAsArrayBuffer(file.slice(0, 132));
  }

  function showPreview(file) {
    if (objectUrl) {
      URL.revokeObjectURL(objectUrl);
      objectUrl = null;
    }
    previewImg.hidden = true;
    preview.hidden = !file;
    showError("");
    if (!file) {
      return;
    }
    sniff(file, function (kind) {
      var name = file.name + " (" + sizeText(file.size) + ")";
      if (kind === "png" || kind === "jpeg") {
        objectUrl = URL.createObjectURL(file);
        previewImg.src = objectUrl;
        previewImg.hidden = false;
        previewText.textContent = name;
      } else if (kind === "dicom") {
        previewText.textContent = name + " — DICOM file: preview after upload.";
      } else {
        previewText.textContent = name;
        showError("This file does not look like a PNG, JPEG or DICOM image. Please choose a chest X-ray or brain MRI.");
      }
    });
  }

  previewImg.addEventListener("error", function () {
    if (previewImg.hidden) {
      return;
    }
    previewImg.hidden = true;
    previewText.textContent += " — no preview: the image may be damaged.";
  });

  input.addEventListener("change", function () {
    showPreview(input.files && input.files[0]);
  });

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.remove("dragover");
    });
  });
  zone.addEventListener("drop", function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) {
      return;
    }
    try {
      input.files = files; // supported by current browsers; keeps the plain form in sync
    } catch (e) {
      /* older browsers: the XHR below still sends the dropped file */
    }
    form._droppedFile = files[0];
    showPreview(files[0]);
  });

  function finish(enabled) {
    submit.disabled = !enabled;
    progressWrap.hidden = enabled;
  }

  form.addEventListener("submit", function (event) {
    if (!window.FormData || !window.XMLHttpRequest) {
      return; // plain post
    }
    event.preventDefault();
    var data = new FormData(form);
    if (form._droppedFile && !(input.files && input.files.length)) {
      data.set("image", form._droppedFile);
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var pct = Math.round((e.loaded / e.total) * 100);
        progress.value = pct;
        progress.textContent = pct + "%";
        progressText.textContent = pct < 100 ? pct + "% sent" : "Checking the image…";
      }
    });
    xhr.onload = function () {
      var body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (e) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.redirect) {
        progressText.textContent = "Uploaded. Opening the study…";
        window.location.assign(body.redirect);
        return;
      }
      finish(true);
      if (body && body.errors) {
        if (body.duplicate) {
          askAboutDuplicate();
        }
        showErrors(body.errors);
      } else if (xhr.status === 413) {
        showError("The file is too large to upload.");
      } else {
        showError("The upload did not go through. Please try again; if it keeps failing, contact your administrator.");
      }
    };
    xhr.onerror = function () {
      finish(true);
      showError("The connection was lost during the upload. Please check your network and try again.");
    };
    progress.value = 0;
    progressText.textContent = "";
    finish(false);
    xhr.send(data);
  });
})();
