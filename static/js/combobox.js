/* An accessible search combobox (the ARIA 1.2 "list autocomplete" pattern): the upload page's
 * patient field. Markup (templates/studies/upload.html):
 *   <div data-combobox data-source="JSON URL" data-target="ID of the hidden input">
 *     <input role="combobox" aria-controls="LIST" aria-expanded="false"> <input type="hidden" id="ID">
 *     <ul id="LIST" role="listbox" hidden></ul> <p data-combobox-status role="status"></p>
 * The source answers ?q=&page= with {results: [{id, label}], count, next_page}. Typing searches
 * (debounced); arrow keys move through the options, Enter chooses, Escape closes; the last option
 * loads the next page. Choosing fills the hidden input; typing again empties it, so the server
 * never takes a stale choice (without script it resolves the typed text itself).
 */
(function () {
  "use strict";

  function Combobox(root) {
    this.root = root;
    this.input = root.querySelector('[role="combobox"]');
    this.list = document.getElementById(this.input.getAttribute("aria-controls"));
    this.target = document.getElementById(root.getAttribute("data-target"));
    this.status = root.querySelector("[data-combobox-status]");
    this.source = root.getAttribute("data-source");
    this.options = [];
    this.active = -1;
    this.timer = 0;
    this.request = 0;
    this.bind();
  }

  Combobox.prototype.bind = function () {
    var self = this;
    this.input.addEventListener("input", function () {
      self.target.value = "";
      window.clearTimeout(self.timer);
      self.timer = window.setTimeout(function () {
        self.search(self.input.value.trim(), 1, false);
      }, 200);
    });
    this.input.addEventListener("keydown", function (e) {
      self.onKey(e);
    });
    this.input.addEventListener("blur", function () {
      window.setTimeout(function () {
        self.close();
      }, 150); // a click on an option lands first
    });
    this.list.addEventListener("mousedown", function (e) {
      e.preventDefault(); // keep focus in the input
    });
    this.list.addEventListener("click", function (e) {
      var li = e.target.closest('[role="option"]');
      if (li) {
        self.choose(parseInt(li.getAttribute("data-index"), 10));
      }
    });
  };

  Combobox.prototype.search = function (q, page, append) {
    var self = this;
    var ticket = ++this.request;
    if (!q) {
      this.close();
      return;
    }
    fetch(this.source + "?" + new URLSearchParams({ q: q, page: String(page) }), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.json();
      })
      .then(function (data) {
        if (ticket !== self.request) {
          return; // an older answer arriving late
        }
        var kept = append ? self.options.filter(function (o) { return !o.more; }) : [];
        self.options = kept.concat(data.results);
        if (data.next_page) {
          self.options.push({ more: true, page: data.next_page, q: q, label: "Show more patients…" });
        }
        self.render(append ? kept.length : -1);
        self.say(data.count === 0 ? "No patient matches." : data.count === 1 ? "1 patient matches." : data.count + " patients match.");
      })
      .catch(function () {
        self.say("The search did not work. Type the full MRN instead.");
      });
  };

  Combobox.prototype.render = function (activeIndex) {
    var self = this;
    this.list.textContent = "";
    this.options.forEach(function (o, i) {
      var li = document.createElement("li");
      li.id = self.list.id + "-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("data-index", String(i));
      li.setAttribute("aria-selected", "false");
      if (o.more) {
        li.className = "more";
      } else {
        li.setAttribute("data-patient", String(o.id));
      }
      li.textContent = o.label;
      self.list.appendChild(li);
    });
    var open = this.options.length > 0;
    this.list.hidden = !open;
    this.input.setAttribute("aria-expanded", String(open));
    this.setActive(activeIndex);
  };

  Combobox.prototype.setActive = function (index) {
    this.active = index;
    var items = this.list.querySelectorAll('[role="option"]');
    Array.prototype.forEach.call(items, function (li, i) {
      li.setAttribute("aria-selected", String(i === index));
    });
    if (index >= 0 && items[index]) {
      this.input.setAttribute("aria-activedescendant", items[index].id);
      items[index].scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  };

  Combobox.prototype.choose = function (index) {
    var o = this.options[index];
    if (!o) {
      return;
    }
    if (o.more) {
      this.search(o.q, o.page, true);
      return;
    }
    this.input.value = o.label;
    this.target.value = String(o.id);
    this.close();
    this.say(o.label + " chosen.");
    this.input.dispatchEvent(new CustomEvent("combobox:chosen", { bubbles: true, detail: { id: o.id } }));
  };

  Combobox.prototype.close = function () {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.setActive(-1);
  };

  Combobox.prototype.say = function (text) {
    if (this.status) {
      this.status.textContent = text;
    }
  };

  Combobox.prototype.onKey = function (e) {
    var open = !this.list.hidden;
    if (e.key === "ArrowDown") {
      if (!open && this.input.value.trim()) {
        this.search(this.input.value.trim(), 1, false);
      } else if (open) {
        this.setActive(Math.min(this.active + 1, this.options.length - 1));
      }
      e.preventDefault();
    } else if (e.key === "ArrowUp" && open) {
      this.setActive(Math.max(this.active - 1, 0));
      e.preventDefault();
    } else if (e.key === "Enter" && open && this.active >= 0) {
      this.choose(this.active);
      e.preventDefault(); // choosing is not submitting
    } else if (e.key === "Escape" && open) {
      this.close();
      e.preventDefault();
    }
  };

  Array.prototype.forEach.call(document.querySelectorAll("[data-combobox]"), function (root) {
    root.imagemedixCombobox = new Combobox(root);
  });
})();
