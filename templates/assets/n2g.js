/* n2g-site: token search box (every page) and sortable/filterable layer tables. No framework.
 *
 * Every string from the data goes into the page with textContent, never innerHTML: a token such as
 * "<script>" stays text. URLs are built relative to this script's own URL (site_root/assets/n2g.js),
 * so the site works under any sub-path and from `mkdocs serve`.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var ROOT = new URL("../", script ? script.src : location.href);
  var MAX_SHOWN = 40;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---------------------------------------------------------------- token search -------- */

  // Same folding as render/search_index.py search_key(): lower case, then trim unless only whitespace.
  function searchKey(q) {
    var k = q.toLowerCase();
    var t = k.trim();
    return t ? t : k;
  }

  function fnv1a32(text) {
    var bytes = new TextEncoder().encode(text);
    var h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) {
      h ^= bytes[i];
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h >>> 0;
  }

  var metaPromise = null;
  var shardCache = {};
  function getJSON(path) {
    return fetch(new URL(path, ROOT).href).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }
  function lookup(key) {
    if (!metaPromise) metaPromise = getJSON("token-search/tokens.json");
    return metaPromise.then(function (meta) {
      var i = fnv1a32(key) & (meta.shards - 1);
      var name = "token-search/tokens-" + ("00" + i.toString(16)).slice(-3) + ".json";
      if (!shardCache[name]) shardCache[name] = getJSON(name);
      return shardCache[name];
    }).then(function (shard) {
      return Object.prototype.hasOwnProperty.call(shard, key) ? shard[key] : null;
    });
  }

  // Rank: the token exactly as typed first, then equal up to surrounding spaces, then case-folded; then value.
  function ranked(entry, rows, query) {
    var q = query, qt = query.trim();
    return rows.map(function (r) {
      var tok = entry.t[r[3]];
      var exact = tok === q ? 0 : (tok.trim() === qt ? 1 : 2);
      return { layer: r[0], neuron: r[1], value: r[2], token: tok, exact: exact };
    }).sort(function (a, b) {
      return a.exact - b.exact || b.value - a.value || a.layer - b.layer || a.neuron - b.neuron;
    });
  }

  function resultList(title, items, total, verb) {
    var box = el("div", "n2g-ts-group");
    box.appendChild(el("div", "n2g-ts-title", title + " (" + total + ")"));
    var ol = el("ol");
    items.slice(0, MAX_SHOWN).forEach(function (it) {
      var li = el("li");
      var a = el("a");
      a.href = new URL("neurons/L" + it.layer + "/N" + it.neuron + "/", ROOT).href;
      a.appendChild(el("span", "n2g-ts-id", "L" + it.layer + " N" + it.neuron));
      a.appendChild(el("code", "n2g-tok", it.token));
      a.appendChild(el("span", "n2g-ts-val", verb + " " + it.value.toFixed(2)));
      li.appendChild(a);
      ol.appendChild(li);
    });
    box.appendChild(ol);
    if (total > Math.min(items.length, MAX_SHOWN)) {
      box.appendChild(el("div", "n2g-ts-more", (total - Math.min(items.length, MAX_SHOWN)) + " more not listed"));
    }
    return box;
  }

  function setupSearch() {
    var header = document.querySelector(".md-header__inner");
    if (!header) return;
    var wrap = el("div", "n2g-ts");
    var input = el("input", "n2g-ts-input");
    input.type = "search";
    input.placeholder = "Neurons by token";
    input.setAttribute("aria-label", "Search neurons by token");
    input.autocomplete = "off";
    input.spellcheck = false;
    var panel = el("div", "n2g-ts-panel");
    panel.hidden = true;
    panel.setAttribute("role", "region");
    panel.setAttribute("aria-live", "polite");
    wrap.appendChild(input);
    wrap.appendChild(panel);
    var before = header.querySelector(".md-search") || header.querySelector(".md-header__source");
    header.insertBefore(wrap, before);

    var seq = 0, timer = null;
    function show(query) {
      var mine = ++seq;
      var key = searchKey(query);
      if (!query || !key) { panel.hidden = true; panel.replaceChildren(); return; }
      lookup(key).then(function (entry) {
        if (mine !== seq) return;
        panel.replaceChildren();
        if (!entry || (!entry.a.length && !entry.c.length)) {
          panel.appendChild(el("div", "n2g-ts-none", "No neuron graph has the token \u201c" + query + "\u201d."));
        } else {
          if (entry.a.length) panel.appendChild(resultList("Fires on it", ranked(entry, entry.a, query), entry.na, "activation"));
          if (entry.c.length) panel.appendChild(resultList("Needs it as context", ranked(entry, entry.c, query), entry.nc, "importance"));
        }
        panel.hidden = false;
      }).catch(function (err) {
        if (mine !== seq) return;
        panel.replaceChildren(el("div", "n2g-ts-none", "Token search is unavailable (" + err.message + ")."));
        panel.hidden = false;
      });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var q = input.value;
      timer = setTimeout(function () { show(q); }, 120);
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { panel.hidden = true; input.blur(); }
      if (e.key === "Enter") {
        var first = panel.querySelector("a");
        if (first) location.href = first.href;
      }
      e.stopPropagation();  // keep Material's keyboard shortcuts (e.g. "s", "/") out of this box
    });
    document.addEventListener("click", function (e) {
      if (!wrap.contains(e.target)) panel.hidden = true;
    });
    input.addEventListener("focus", function () { if (panel.childNodes.length) panel.hidden = false; });
  }

  /* ---------------------------------------------------- sortable, filterable tables -------- */

  function setupTable(table) {
    var tbody = table.tBodies[0];
    if (!tbody) return;
    var rows = Array.prototype.slice.call(tbody.rows);
    var bar = el("div", "n2g-tablebar");
    var filter = el("input", "n2g-filter");
    filter.type = "search";
    filter.placeholder = "Filter rows (neuron, token, status)";
    filter.setAttribute("aria-label", "Filter the table");
    var count = el("span", "n2g-note");
    bar.appendChild(filter);
    bar.appendChild(count);
    var holder = table.closest(".n2g-table") || table;
    holder.parentNode.insertBefore(bar, holder);
    var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    function update() {
      var q = filter.value.toLowerCase().trim();
      var shown = 0;
      rows.forEach(function (r, i) {
        var ok = !q || texts[i].indexOf(q) !== -1;
        r.hidden = !ok;
        if (ok) shown++;
      });
      count.textContent = shown + " of " + rows.length + " rows";
    }
    filter.addEventListener("input", update);
    filter.addEventListener("keydown", function (e) { e.stopPropagation(); });
    update();

    var heads = table.tHead ? Array.prototype.slice.call(table.tHead.rows[0].cells) : [];
    heads.forEach(function (th, col) {
      if (th.hasAttribute("data-nosort")) return;
      th.classList.add("n2g-sort");
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      function sort() {
        var desc = th.getAttribute("aria-sort") !== "descending";
        heads.forEach(function (h) { if (h.classList.contains("n2g-sort")) h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        var keyed = rows.map(function (r, i) {
          var cell = r.cells[col];
          var v = cell ? cell.getAttribute("data-v") : null;
          var num = v === null || v === "" ? NaN : Number(v);
          return { row: r, num: num, text: cell ? cell.textContent : "", i: i };
        });
        var numeric = keyed.some(function (k) { return !isNaN(k.num); });
        keyed.sort(function (a, b) {
          var c;
          if (numeric) {
            // Missing values always sort last.
            if (isNaN(a.num) || isNaN(b.num)) c = isNaN(a.num) - isNaN(b.num);
            else c = desc ? b.num - a.num : a.num - b.num;
          } else {
            c = desc ? b.text.localeCompare(a.text) : a.text.localeCompare(b.text);
          }
          return c || a.i - b.i;
        });
        var frag = document.createDocumentFragment();
        keyed.forEach(function (k) { frag.appendChild(k.row); });
        tbody.appendChild(frag);
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }

  // For tests and debugging: the same folding, hash and ranking the box uses.
  window.n2gSearch = { key: searchKey, hash: fnv1a32, ranked: ranked, root: ROOT.href };

  function init() {
    setupSearch();
    Array.prototype.forEach.call(document.querySelectorAll("table.n2g-sortable"), setupTable);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
