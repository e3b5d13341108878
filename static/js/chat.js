/* ImageMedix chat: upgrades the conversation page's plain form to a WebSocket.
 *
 * Without JavaScript (or while the socket is down) the form posts normally and the page
 * reloads: that is the fallback and it always works. Message text is only ever inserted
 * with textContent, never as HTML.
 */
(function () {
  "use strict";

  var section = document.getElementById("chat");
  var form = document.getElementById("chat-form");
  var log = document.getElementById("chat-log");
  var textarea = document.getElementById("chat-body");
  var errorBox = document.getElementById("chat-error");
  var statusBox = document.getElementById("chat-status");
  if (!section || !form || !log || !textarea || !("WebSocket" in window)) {
    return;
  }
  // Only the newest page is live; older pages are history.
  if (section.getAttribute("data-live") !== "1") {
    return;
  }
  var me = section.getAttribute("data-user-id");
  var path = section.getAttribute("data-ws-url");
  var url = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;

  var FINAL_CODES = { 4401: true, 4403: true, 4404: true };
  var MAX_ATTEMPTS = 8;
  var socket = null;
  var open = false;
  var attempts = 0;
  var stopped = false;
  var pending = "";
  var connectedOnce = false;

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function setStatus(text) {
    if (statusBox) {
      statusBox.textContent = text;
    }
  }

  function lastMessageId() {
    var items = log.querySelectorAll("[data-message-id]");
    var max = 0;
    Array.prototype.forEach.call(items, function (li) {
      max = Math.max(max, parseInt(li.getAttribute("data-message-id"), 10) || 0);
    });
    return max;
  }

  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) {
      return "";
    }
    return date.toLocaleString("en-GB", {
      day: "numeric",
      month: "short",
      year: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hour12: false,
    });
  }

  function render(m) {
    if (log.querySelector('[data-message-id="' + String(parseInt(m.id, 10)) + '"]')) {
      return; // already shown
    }
    var empty = document.getElementById("chat-empty");
    if (empty) {
      empty.remove();
    }
    var mine = String(m.sender_id) === me;
    var item = document.createElement("li");
    item.className = "chat-message" + (mine ? " mine" : "");
    item.setAttribute("data-message-id", String(m.id));

    var meta = document.createElement("p");
    meta.className = "chat-meta";
    var who = document.createElement("strong");
    who.textContent = mine ? "You" : m.sender_name;
    var when = document.createElement("time");
    when.setAttribute("datetime", m.created_at);
    when.textContent = formatTime(m.created_at);
    meta.appendChild(who);
    meta.appendChild(document.createTextNode(" "));
    meta.appendChild(when);

    var body = document.createElement("p");
    body.className = "chat-body";
    // textContent (never innerHTML); line breaks are kept by CSS (white-space: pre-wrap).
    body.textContent = m.body;

    item.appendChild(meta);
    item.appendChild(body);
    log.appendChild(item);
    item.scrollIntoView({ block: "end" });

    if (!mine && open) {
      socket.send(JSON.stringify({ type: "read", up_to: m.id }));
    }
  }

  function closeForGood(text) {
    stopped = true;
    open = false;
    showError(text);
    textarea.disabled = true;
    Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) {
      b.disabled = true;
    });
    setStatus("");
  }

  function onMessage(raw) {
    var data;
    try {
      data = JSON.parse(raw.data);
    } catch (e) {
      return;
    }
    if (data.type === "hello") {
      if (connectedOnce) {
        socket.send(JSON.stringify({ type: "sync", since: lastMessageId() }));
      }
      connectedOnce = true;
      setStatus("Connected: new messages appear here as they arrive.");
    } else if (data.type === "message") {
      render(data.message);
      if (String(data.message.sender_id) === me && data.message.body === pending) {
        pending = "";
      }
    } else if (data.type === "history") {
      (data.messages || []).forEach(render);
    } else if (data.type === "error") {
      showError(data.message);
      if (pending && !textarea.value) {
        textarea.value = pending; // give the text back so nothing typed is lost
      }
      pending = "";
    } else if (data.type === "revoked") {
      closeForGood(data.message);
    }
  }

  function connect() {
    if (stopped) {
      return;
    }
    socket = new WebSocket(url);
    socket.onopen = function () {
      open = true;
      attempts = 0;
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      open = false;
      socket = null;
      if (stopped) {
        return;
      }
      if (FINAL_CODES[event.code]) {
        closeForGood("You can no longer send messages in this conversation.");
        return;
      }
      attempts += 1;
      if (attempts > MAX_ATTEMPTS) {
        setStatus("Live updates are paused. Messages still send; reload the page to see new replies.");
        return;
      }
      setStatus("Reconnecting…");
      var delay = Math.min(30000, 1000 * Math.pow(2, attempts - 1));
      window.setTimeout(connect, delay / 2 + Math.random() * (delay / 2));
    };
  }

  form.addEventListener("submit", function (event) {
    if (!open) {
      return; // no live connection: let the browser post the form (the fallback)
    }
    event.preventDefault();
    var text = textarea.value.trim();
    if (!text) {
      showError("Please write a message before sending.");
      return;
    }
    showError("");
    pending = text;
    socket.send(JSON.stringify({ type: "message", body: text }));
    textarea.value = "";
    textarea.focus();
  });

  connect();
})();
