/* ImageMedix live updates: notifications and study status over one WebSocket.
 *
 * Included by base.html as
 *   <script src="/static/js/live.js" defer data-ws-url="/ws/h/<slug>/notifications/"></script>
 *
 * - Reconnects with exponential backoff; after a reconnect asks the server for every
 *   notification it missed ("sync"), because pushes are delivered at most once.
 * - [data-study-status="<id>"]: text = human status label ("AI read ready", "AI unsure",
 *   "Not read by the AI"…), class status-<status>.
 * - [data-study-message="<id>"]: text = the status message.
 * - [data-report-pdf="<id>"] (with data-pdf-status): a signed report's PDF; becomes the
 *   "Download PDF" link when the report.pdf event says it is ready.
 * - #notif-count: the unread count.
 * - [data-live-reload-on-done="<id>"]: when that study finishes, the page is re-fetched and its
 *   #study-result and [data-live-swap] elements swapped in (or the page reloads); the
 *   "imagemedix:study-result" event on document then tells other scripts.
 * All text goes in with textContent, never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[data-ws-url]");
  var path = script && script.getAttribute("data-ws-url");
  if (!path || !("WebSocket" in window)) {
    return;
  }
  var url = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;

  // Close codes the server uses when retrying cannot help (see apps/chat/consumers.py).
  var FINAL_CODES = { 4401: true, 4403: true, 4404: true };
  var MAX_DELAY_MS = 30000;
  // The statuses a study's AI read ends in (apps/studies/models.py FINISHED_STATUSES).
  var FINISHED = { done: true, unsure: true, refused: true, failed: true };

  var socket = null;
  var attempts = 0;
  var lastId = null; // newest notification id seen; null until the first "hello"
  var retryTimer = null;
  var stopped = false;

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(String(value)) : String(value).replace(/["\\]/g, "\\$&");
  }

  function setUnread(count) {
    var el = document.getElementById("notif-count");
    if (!el || typeof count !== "number") {
      return;
    }
    el.textContent = count > 0 ? String(count) : "";
    el.setAttribute("aria-label", count === 1 ? "1 unread" : count + " unread");
    el.setAttribute("data-unread", String(count));
    el.classList.toggle("has-unread", count > 0);
  }

  function announce(text) {
    var region = document.getElementById("live-announcer");
    if (!region) {
      region = document.createElement("div");
      region.id = "live-announcer";
      region.className = "visually-hidden";
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    region.textContent = text;
  }

  function updateStudy(event) {
    var id = cssEscape(event.study_id);
    var changed = false;
    each('[data-study-status="' + id + '"]', function (el) {
      changed = changed || !el.classList.contains("status-" + event.status);
      el.textContent = event.label || event.status;
      Array.prototype.slice.call(el.classList).forEach(function (cls) {
        if (cls.indexOf("status-") === 0) {
          el.classList.remove(cls);
        }
      });
      el.classList.add("status-" + event.status);
    });
    each('[data-study-message="' + id + '"]', function (el) {
      el.textContent = event.message || "";
    });
    if (changed && FINISHED[event.status]) {
      var holder = document.querySelector('[data-live-reload-on-done="' + id + '"]');
      if (holder) {
        refreshStudyResult();
      }
    }
  }

  // A study can finish before this socket connects (or while it is down), and pushes are
  // delivered at most once, so after every connect ask for the status of the studies shown.
  function askForStudyStatus() {
    var ids = [];
    each("[data-study-status]", function (el) {
      var id = parseInt(el.getAttribute("data-study-status"), 10);
      if (!isNaN(id) && ids.indexOf(id) === -1) {
        ids.push(id);
      }
    });
    if (ids.length && socket && socket.readyState === 1) {
      socket.send(JSON.stringify({ type: "studies", ids: ids.slice(0, 200) }));
    }
  }

  // Re-fetch the page and swap in the fresh #study-result and every [data-live-swap] element
  // (by id), then tell the page's scripts (the viewer adds the AI heatmap layer).
  function refreshStudyResult() {
    var current = document.getElementById("study-result");
    if (!current || !window.fetch || !window.DOMParser) {
      window.location.reload();
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        if (!doc.getElementById("study-result")) {
          throw new Error("no #study-result");
        }
        swapFrom(doc, current);
        each("[data-live-swap]", function (el) {
          if (el.id) {
            swapFrom(doc, el);
          }
        });
        document.dispatchEvent(new CustomEvent("imagemedix:study-result"));
      })
      .catch(function () {
        window.location.reload();
      });
  }

  function swapFrom(doc, current) {
    var fresh = doc.getElementById(current.id);
    if (fresh) {
      current.replaceWith(document.importNode(fresh, true));
    }
  }

  // A signed report's PDF: [data-report-pdf="<id>"] shows "being prepared" until the PDF is
  // stored, then the download link (or says it could not be produced).
  function updateReportPdf(event) {
    each('[data-report-pdf="' + cssEscape(event.report_id) + '"]', function (el) {
      if (el.getAttribute("data-pdf-status") === event.status) {
        return;
      }
      el.setAttribute("data-pdf-status", event.status);
      el.textContent = "";
      if (event.status === "ready" && event.url && event.url.charAt(0) === "/" && event.url.charAt(1) !== "/") {
        var link = document.createElement("a");
        link.className = "button";
        link.href = event.url;
        link.textContent = "Download PDF";
        el.appendChild(link);
        announce("The PDF of the report is ready.");
      } else if (event.status === "failed") {
        var note = document.createElement("span");
        note.className = "alert alert-error";
        note.textContent = "The PDF could not be produced. Reload the page to try again.";
        el.appendChild(note);
        announce(note.textContent);
      } else {
        el.textContent = event.label || "";
      }
    });
  }

  function askForReportPdfs() {
    var ids = [];
    each('[data-report-pdf][data-pdf-status="pending"]', function (el) {
      var id = parseInt(el.getAttribute("data-report-pdf"), 10);
      if (!isNaN(id) && ids.indexOf(id) === -1) {
        ids.push(id);
      }
    });
    if (ids.length && socket && socket.readyState === 1) {
      socket.send(JSON.stringify({ type: "reports", ids: ids.slice(0, 50) }));
    }
  }

  function addToList(n) {
    var list = document.getElementById("notification-list");
    if (!list || list.querySelector('[data-notification-id="' + cssEscape(n.id) + '"]')) {
      return;
    }
    var item = document.createElement("li");
    item.className = "card notification unread";
    item.setAttribute("data-notification-id", String(n.id));
    var title = document.createElement(n.url ? "a" : "strong");
    if (n.url && n.url.charAt(0) === "/" && n.url.charAt(1) !== "/") {
      title.href = n.url;
    }
    title.textContent = n.title;
    var p = document.createElement("p");
    p.appendChild(title);
    item.appendChild(p);
    if (n.body) {
      var body = document.createElement("p");
      body.textContent = n.body;
      item.appendChild(body);
    }
    list.insertBefore(item, list.firstChild);
  }

  function receiveNotification(n) {
    if (lastId !== null && n.id <= lastId) {
      return; // already seen (a push and a sync can overlap)
    }
    lastId = Math.max(lastId || 0, n.id);
    addToList(n);
    announce(n.title);
  }

  function onMessage(raw) {
    var data;
    try {
      data = JSON.parse(raw.data);
    } catch (e) {
      return;
    }
    switch (data.type) {
      case "hello":
        setUnread(data.unread);
        askForStudyStatus();
        askForReportPdfs();
        if (lastId === null) {
          lastId = data.last_id || 0;
        } else if ((data.last_id || 0) > lastId) {
          socket.send(JSON.stringify({ type: "sync", since: lastId }));
        }
        break;
      case "sync":
        (data.notifications || []).forEach(receiveNotification);
        setUnread(data.unread);
        break;
      case "notification":
        receiveNotification(data.notification);
        setUnread(data.unread);
        break;
      case "unread":
        setUnread(data.unread);
        break;
      case "study.status":
        updateStudy(data);
        break;
      case "report.pdf":
        updateReportPdf(data);
        break;
      default:
        break;
    }
  }

  function scheduleReconnect() {
    if (stopped || retryTimer) {
      return;
    }
    var delay = Math.min(MAX_DELAY_MS, 1000 * Math.pow(2, attempts));
    delay = delay / 2 + Math.random() * (delay / 2); // jitter: clients do not reconnect in lockstep
    attempts += 1;
    retryTimer = window.setTimeout(function () {
      retryTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (stopped || (socket && socket.readyState <= 1)) {
      return;
    }
    socket = new WebSocket(url);
    socket.onopen = function () {
      attempts = 0;
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      socket = null;
      if (FINAL_CODES[event.code]) {
        stopped = true;
        return;
      }
      scheduleReconnect();
    };
  }

  // Come back promptly when the network or the tab does.
  window.addEventListener("online", function () {
    attempts = 0;
    connect();
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !socket && !retryTimer) {
      connect();
    }
  });

  connect();
})();
