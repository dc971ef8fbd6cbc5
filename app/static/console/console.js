/* Hotline console: forms to the JSON API (with the session's CSRF header), live updates from
 * /api/v1/events, quick exit. No dependencies, no inline scripts (the CSP forbids them), and
 * nothing is written to localStorage, sessionStorage, the URL or the page title. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var strings = (document.getElementById("strings") || { dataset: {} }).dataset;
  var events = null;

  function api(method, url, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
    return fetch(url, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      if (response.ok) touched();
      if (response.status === 401 && document.body.dataset.signedIn) {
        window.location.replace("/console/login");
      }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var error = new Error("request failed");
          error.status = response.status;
          error.data = data;
          throw error;
        }
        return data;
      });
    });
  }

  // Idle warning: a minute before the server's idle limit, unless the volunteer holds a call or
  // chat (the server does not time them out then). Live updates do not count as activity.
  var lastActivity = Date.now();
  function touched() {
    lastActivity = Date.now();
    var warning = document.getElementById("idle-warning");
    if (warning) warning.hidden = true;
  }
  function checkIdle() {
    var limit = parseInt(document.body.dataset.idleSeconds || "0", 10) * 1000;
    if (!limit || !document.body.dataset.signedIn || document.body.dataset.holding) return;
    var idle = Date.now() - lastActivity;
    var warning = document.getElementById("idle-warning");
    if (idle >= limit) {
      window.location.replace("/console/login");
    } else if (warning && idle >= limit - 60000 && warning.hidden) {
      warning.hidden = false;
      warning.querySelector("button").focus();
    }
  }
  window.setInterval(checkIdle, 5000);

  function say(form, text, isError) {
    var box = form.querySelector(".message");
    if (!box) return;
    box.textContent = text || "";
    box.classList.toggle("error", !!isError);
  }

  function collectShifts(form) {
    var shifts = [];
    Array.prototype.forEach.call(form.querySelectorAll(".shift-row"), function (row) {
      var shift = {};
      Array.prototype.forEach.call(row.querySelectorAll("[data-field]"), function (el) {
        shift[el.dataset.field] = el.dataset.field === "duration_minutes" ? parseInt(el.value, 10) : el.value;
      });
      shifts.push(shift);
    });
    return { shifts: shifts };
  }

  var rowCounter = 0;
  function addShift(form) {
    var template = document.getElementById("shift-template");
    var row = template.content.firstElementChild.cloneNode(true);
    rowCounter += 1;
    var suffix = "new-" + rowCounter;
    Array.prototype.forEach.call(row.querySelectorAll("[data-id]"), function (el) {
      el.id = el.dataset.id + "-" + suffix;
    });
    Array.prototype.forEach.call(row.querySelectorAll("label[data-for]"), function (label) {
      label.htmlFor = label.dataset.for + "-" + suffix;
    });
    var rows = form.querySelector(".shift-rows");
    var empty = rows.querySelector(".empty");
    if (empty) empty.remove();
    rows.appendChild(row);
    row.querySelector("select").focus();
  }

  function collect(form) {
    if (form.dataset.shape === "shifts") return collectShifts(form);
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.disabled) return;
      if (el.type === "checkbox" && !el.checked) return;
      var value = el.value;
      if (el.dataset.type === "int") value = parseInt(value, 10);
      if (el.dataset.split !== undefined) {
        value = value.split(el.dataset.split).map(function (v) { return v.trim(); }).filter(Boolean);
      }
      if (el.hasAttribute("data-array")) {
        (body[el.name] = body[el.name] || []).push(value);
        return;
      }
      if (value === "" || (typeof value === "number" && isNaN(value))) return;
      body[el.name] = value;
    });
    if (form.dataset.wrap) {
      var wrapped = {};
      wrapped[form.dataset.wrap] = body;
      return wrapped;
    }
    return body;
  }

  function tokenFromFragment() {
    var match = /(?:^|[#&])token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
    return match ? match[1] : null;
  }

  function appendNote(list, note) {
    var item = document.createElement("li");
    var meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = note.created_at.replace("T", " ").slice(0, 16) + " · " + note.author;
    var text = document.createElement("p");
    text.className = "body";
    text.textContent = note.body === null ? "—" : note.body;
    item.appendChild(meta);
    item.appendChild(text);
    list.appendChild(item);
  }

  var after = {
    console: function () { window.location.replace("/console"); },
    reload: function () { window.location.reload(); },
    message: function (form) { say(form, form.dataset.done || ""); },
    "note-added": function (form) {
      var text = form.querySelector("textarea");
      var list = document.getElementById("notes");
      appendNote(list, { created_at: new Date().toISOString(), author: "", body: text.value });
      text.value = "";
      say(form, "");
      saveDraft();
    },
    replied: function (form) {
      var text = form.querySelector("textarea");
      var list = document.getElementById("messages");
      if (list) addMessage(list, { direction: "out", created_at: new Date().toISOString(), body: text.value });
      text.value = "";
      say(form, form.dataset.done || "");
    },
    "reveal-case": function (form, data) {
      var intake = document.getElementById("intake-form");
      Object.keys(data.values || {}).forEach(function (name) {
        var value = data.values[name] === null ? "" : data.values[name];
        var input = document.getElementById("f-" + name);
        if (input) input.value = value;
        var shown = document.getElementById("v-" + name);
        if (shown) shown.textContent = value || "—";
      });
      var list = document.getElementById("notes");
      if (list && data.notes) {
        list.textContent = "";
        data.notes.forEach(function (note) { appendNote(list, note); });
      }
      say(form, "");
      if (intake && data.draft) {
        Object.keys(data.draft).forEach(function (name) {
          var field = name === "note" ? document.getElementById("note-body") : document.getElementById("f-" + name);
          if (field) field.value = data.draft[name];
        });
        say(intake, intake.dataset.draftRestored);
      }
    },
    "reveal-chat": function (form, data) {
      var list = document.getElementById("messages");
      data.messages.forEach(function (message) { addMessage(list, message); });
      if (data.messages.length) document.getElementById("reveal-after").value = data.messages[data.messages.length - 1].id;
      var button = form.querySelector('button[type="submit"]');
      if (form.dataset.more) button.textContent = form.dataset.more;
      say(form, "");
    },
    "enrol-started": function (form, data) {
      var holder = document.getElementById("enrol-qr");
      var svg = new DOMParser().parseFromString(data.qr_svg, "image/svg+xml").documentElement;
      if (svg && svg.nodeName.toLowerCase() === "svg") {
        svg.setAttribute("role", "img");
        svg.setAttribute("aria-label", "QR");
        holder.textContent = "";
        holder.appendChild(document.importNode(svg, true));
      }
      document.getElementById("enrol-key").textContent = data.totp_secret;
      form.hidden = true;
      form.reset();
      var confirm = document.getElementById("enrol-confirm");
      confirm.hidden = false;
      confirm.querySelector("#enrol-code").focus();
    },
    enrolled: function (form) {
      form.hidden = true;
      document.getElementById("enrol-key").textContent = "";
      document.getElementById("enrol-qr").textContent = "";
      document.getElementById("enrol-done").hidden = false;
    },
    verify: function (form, data) { pollVerification(form, data); },
    "open-case": function (form, data) {
      if (data.case) window.location.assign("/console/cases/" + encodeURIComponent(data.case));
    },
    export: function (form) {
      // Stepped up: now the CSV of the filtered entries (metadata only), saved as a file.
      var filters = {};
      ["actor", "case", "action", "since", "until"].forEach(function (name) {
        var value = form.dataset[name];
        if (value) filters[name] = (name === "since" || name === "until") ? value + ":00Z" : value;
      });
      fetch("/api/v1/audit/exports", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(filters),
        credentials: "same-origin",
        cache: "no-store",
      }).then(function (response) {
        if (!response.ok) throw new Error("export failed");
        return response.blob();
      }).then(function (blob) {
        var url = URL.createObjectURL(blob);
        var link = document.createElement("a");
        link.href = url;
        link.download = "audit-export.csv";
        document.body.appendChild(link);
        link.click();
        link.remove();
        window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
        form.reset();
        say(form, "");
      }).catch(function () { say(form, strings.generic, true); });
    },
    "show-link": function (form, data) {
      // The one-time enrolment link, for the admin to pass on through a safe channel.
      var out = form.querySelector("[data-link]");
      if (out) out.textContent = data.enrolment_link || "";
      if (form.id === "new-user") form.reset();
    },
  };

  function addMessage(list, message) {
    var item = document.createElement("li");
    item.className = message.direction === "in" ? "in" : "out";
    var who = document.createElement("p");
    who.className = "meta";
    who.textContent = (message.direction === "in" ? strings.chatIn : strings.chatOut) + " · " +
      String(message.created_at).replace("T", " ").slice(0, 16);
    var text = document.createElement("p");
    text.className = "body";
    text.textContent = message.body === null ? "—" : message.body;
    item.appendChild(who);
    item.appendChild(text);
    list.appendChild(item);
  }

  function pollVerification(form, run) {
    var progress = document.getElementById("verify-progress");
    var result = document.getElementById("verify-result");
    progress.hidden = false;
    function show(current) {
      if (current.entries_total) {
        progress.max = current.entries_total;
        progress.value = current.entries_checked;
      }
      if (current.state === "done" || current.state === "failed" || current.finished_at) {
        var ok = current.problems.length === 0 && current.state !== "failed";
        result.textContent = (ok ? form.dataset.ok : form.dataset.bad) + " — " +
          current.entries_checked + " " + form.dataset.checked;
        result.classList.toggle("error", !ok);
        result.dataset.outcome = ok ? "ok" : "bad";
        return;
      }
      result.textContent = form.dataset.running + " " + current.entries_checked + " " + form.dataset.checked;
      window.setTimeout(function () {
        api("GET", "/api/v1/audit/verifications/latest").then(show, function () {
          say(form, strings.generic, true);
        });
      }, 500);
    }
    show(run);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.dataset || !form.dataset.api) return;
    event.preventDefault();
    if (form.id === "intake-form" && draftTimer) window.clearTimeout(draftTimer);
    var button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    say(form, "");
    api(form.dataset.method || "POST", form.dataset.api, collect(form))
      .then(function (data) {
        var next = after[form.dataset.after];
        if (next) next(form, data || {});
      })
      .catch(function (error) {
        var detail = error.data && error.data.error && error.data.error.message;
        say(form, form.dataset.error || detail || strings.generic, true);
      })
      .then(function () { if (button) button.disabled = false; });
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button") : null;
    if (!target) return;
    if (target.dataset.offerAction) {
      var id = target.dataset.offer;
      api("POST", "/api/v1/offers/" + encodeURIComponent(id) + "/" + target.dataset.offerAction)
        .then(function (data) {
          if (data && data.case && target.dataset.offerAction === "accept") {
            window.location.assign("/console/cases/" + encodeURIComponent(data.case));
          } else {
            refreshOffers();
          }
        }, refreshOffers);
    } else if (target.dataset.callback) {
      api("POST", "/api/v1/callbacks/" + encodeURIComponent(target.dataset.callback) + "/claim")
        .then(function (data) {
          if (data && data.case) window.location.assign("/console/cases/" + encodeURIComponent(data.case));
        }, function () { window.location.reload(); });
    } else if (target.hasAttribute("data-add-shift")) {
      addShift(target.closest("form"));
    } else if (target.hasAttribute("data-remove-shift")) {
      target.closest(".shift-row").remove();
    } else if (target.hasAttribute("data-stay")) {
      api("GET", "/api/v1/auth/me");
    } else if (target.hasAttribute("data-signout")) {
      signOut("/console/login");
    }
  });

  function refreshFragment(url, holderId) {
    var holder = document.getElementById(holderId);
    if (!holder) return;
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (response.status === 401) { window.location.replace("/console/login"); return null; }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null || html === undefined) return;
      // Server-rendered by our own templates (autoescaped): metadata only.
      var parsed = new DOMParser().parseFromString(html, "text/html");
      holder.replaceChildren.apply(holder, Array.prototype.slice.call(parsed.body.childNodes));
    });
  }

  function refreshOffers() { refreshFragment("/console/fragments/offers", "offers"); }
  function refreshBoard() { refreshFragment("/console/fragments/board", "board"); }

  function status(text) {
    var box = document.getElementById("live-status");
    if (box) box.textContent = text;
  }

  function connect() {
    var page = document.body.dataset.live;
    if (!page || !window.EventSource) return;
    events = new EventSource("/api/v1/events");
    events.onopen = function () { status(strings.liveOn); };
    events.onerror = function () { status(strings.liveLost); };
    events.onmessage = function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      if (data.type === "signed_out") {
        events.close();
        window.location.replace("/console/login");
      } else if (data.type === "offer") {
        if (data.state === "accepted") {
          // A call accepted on the phone (pressing 1): open its case.
          window.location.assign("/console/offers/" + encodeURIComponent(data.id));
        } else if (page === "home") {
          refreshOffers();
        }
      } else if (data.type === "board" && page === "board") {
        refreshBoard();
      } else if (data.type === "chat") {
        var here = document.querySelector("[data-conversation]");
        if (here && here.dataset.conversation === data.id) {
          var count = document.getElementById("message-count");
          if (count) count.textContent = String(parseInt(count.textContent, 10) + 1);
        } else if (page === "home") {
          window.location.reload();
        }
      } else if (data.type === "resync") {
        if (page === "home") refreshOffers();
        if (page === "board") refreshBoard();
      }
    };
  }

  function wipe() {
    try { window.localStorage.clear(); } catch (e) { /* not available */ }
    try { window.sessionStorage.clear(); } catch (e) { /* not available */ }
    if (events) events.close();
  }

  function signOut(destination) {
    wipe();
    var done = false;
    function leave() {
      if (done) return;
      done = true;
      window.location.replace(destination);
    }
    fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
      keepalive: true,
    }).then(leave, leave);
    window.setTimeout(leave, 1500);
  }

  function quickExit() {
    // Hide everything at once, then end the session and leave without a history entry.
    document.body.textContent = "";
    document.title = "";
    signOut("/console/exit");
  }

  var lastEscape = 0;
  // Intake drafts: what is typed into the intake form (and a note not yet added) is autosaved,
  // sealed on the server, two seconds after typing stops. Never in the browser's storage.
  var draftTimer = null;
  function draftFields() {
    var fields = {};
    var intake = document.getElementById("intake-form");
    if (!intake) return null;
    Array.prototype.forEach.call(intake.querySelectorAll("input[id^='f-']"), function (input) {
      if (input.value) fields[input.name] = input.value;
    });
    var note = document.getElementById("note-body");
    if (note && note.value) fields.note = note.value;
    return fields;
  }
  function saveDraft() {
    var intake = document.getElementById("intake-form");
    var fields = draftFields();
    if (!intake || fields === null) return;
    var request = Object.keys(fields).length
      ? api("PUT", intake.dataset.draft, { fields: fields })
      : api("DELETE", intake.dataset.draft);
    request.then(function () {
      if (Object.keys(fields).length) say(intake, intake.dataset.draftSaved);
    }, function () { /* the next pause in typing tries again */ });
  }
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (!target.closest || !(target.closest("#intake-form") || target.id === "note-body")) return;
    if (draftTimer) window.clearTimeout(draftTimer);
    draftTimer = window.setTimeout(saveDraft, 2000);
  });

  // Referral search: narrows the organisations list as you type (public directory data only).
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.dataset || !input.dataset.filterSelect) return;
    var select = document.getElementById(input.dataset.filterSelect);
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var first = null;
    Array.prototype.forEach.call(select.options, function (option) {
      var text = option.textContent.toLowerCase();
      var match = words.every(function (word) { return text.indexOf(word) !== -1; });
      option.hidden = !match;
      option.disabled = !match;
      if (match && first === null) first = option;
    });
    if (first && select.selectedOptions[0] && select.selectedOptions[0].hidden) first.selected = true;
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var now = Date.now();
    if (now - lastEscape < 1000) {
      quickExit();
    }
    lastEscape = now;
  });

  document.addEventListener("DOMContentLoaded", function () {
    var exit = document.getElementById("quick-exit");
    if (exit) exit.addEventListener("click", quickExit);
    var token = tokenFromFragment();
    var tokenInputs = document.querySelectorAll("input[data-token]");
    if (tokenInputs.length) {
      if (token) {
        Array.prototype.forEach.call(tokenInputs, function (input) { input.value = token; });
        // The token leaves the address bar (and so the history) as soon as it has been read.
        window.history.replaceState(null, "", window.location.pathname);
      } else {
        document.getElementById("enrol-missing").hidden = false;
        document.getElementById("enrol-start").hidden = true;
      }
    }
    connect();
  });
  window.addEventListener("pagehide", function () { if (events) events.close(); });
})();
