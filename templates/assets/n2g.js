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

  /* Data files are classic scripts calling n2gDeliver(name, data) (render/search_index.py): a <script>
   * tag loads them over http and from file:// alike, where fetch() is refused. */
  var pending = {}, delivered = {};
  window.n2gDeliver = function (name, data) {
    if (typeof data === "string") data = JSON.parse(data);  // JSON text: a "__proto__" key stays a key
    delivered[name] = data;
    if (pending[name]) pending[name].resolve(data);
  };
  function load(name) {
    if (!pending[name]) {
      var p = {};
      p.promise = new Promise(function (resolve, reject) { p.resolve = resolve; p.reject = reject; });
      pending[name] = p;
      if (Object.prototype.hasOwnProperty.call(delivered, name)) { p.resolve(delivered[name]); return p.promise; }
      var tag = document.createElement("script");
      tag.src = new URL(name + ".js", ROOT).href;
      tag.async = true;
      var fail = function (why) { delete pending[name]; tag.remove(); p.reject(new Error(name + ".js " + why)); };
      tag.onerror = function () { fail("could not be loaded"); };  // the next lookup tries again
      tag.onload = function () {
        if (!Object.prototype.hasOwnProperty.call(delivered, name)) fail("holds no data");
      };
      document.head.appendChild(tag);
    }
    return pending[name].promise;
  }

  function lookup(key) {
    return load("token-search/tokens").then(function (meta) {
      var i = fnv1a32(key) & (meta.shards - 1);
      return load("token-search/tokens-" + ("00" + i.toString(16)).slice(-3));
    }).then(function (shard) {
      return Object.prototype.hasOwnProperty.call(shard, key) ? shard[key] : null;
    });
  }

  // A neuron's [summary, trigger groups, held-out F1] (null when it has no graph).
  function neuronInfo(layer, neuron) {
    return load("token-search/tokens").then(function (meta) {
      return load("token-search/neurons-L" + layer + "-" + Math.floor(neuron / meta.info_chunk));
    }).then(function (info) {
      return Object.prototype.hasOwnProperty.call(info, String(neuron)) ? info[String(neuron)] : null;
    }, function () { return null; });
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

  function neuronLink(it) {
    var a = el("a");
    a.href = new URL("neurons/L" + it.layer + "/N" + it.neuron + "/" + (it.anchor ? "#" + it.anchor : ""), ROOT).href;
    a.appendChild(el("span", "n2g-ts-id", "L" + it.layer + " N" + it.neuron));
    if (it.token !== undefined) a.appendChild(el("code", "n2g-tok", it.token));
    return a;
  }

  // A neuron's summary line: the graph's one-line description, plus its trigger count when above one.
  function summaryText(info) {
    return info[0] + (info[1] > 1 ? " \u00b7 " + info[1] + " triggers" : "");
  }

  // The score badge of render/verdict.py (info[3]: its state), as on the neuron page and in layer tables.
  var BADGES = { beats: "beats baselines", loses: "no better than a baseline", none: "cannot be scored",
                 unrated: "not compared" };
  function badge(info) {
    var state = info && info[3];
    if (!state || !Object.prototype.hasOwnProperty.call(BADGES, state)) return null;
    return el("span", "n2g-v n2g-v-" + state, BADGES[state]);
  }

  // Fill in each result's badge and one-line summary once its (small, cached) summary file has loaded.
  function addSummaries(items) {
    items.forEach(function (it) {
      neuronInfo(it.layer, it.neuron).then(function (info) {
        if (info && info[0]) it.summaryEl.textContent = summaryText(info);
        var b = badge(info);
        if (b) it.summaryEl.parentNode.insertBefore(b, it.summaryEl);
      });
    });
  }

  function resultList(title, items, total, verb) {
    var box = el("div", "n2g-ts-group");
    box.appendChild(el("div", "n2g-ts-title", title + " (" + total + ")"));
    var ol = el("ol");
    var shown = items.slice(0, MAX_SHOWN);
    shown.forEach(function (it) {
      var li = el("li");
      var a = neuronLink(it);
      a.appendChild(el("span", "n2g-ts-val", verb + " " + it.value.toFixed(2)));
      it.summaryEl = el("span", "n2g-ts-sum");
      a.appendChild(it.summaryEl);
      li.appendChild(a);
      ol.appendChild(li);
    });
    box.appendChild(ol);
    addSummaries(shown);
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
    // A token of this build (tokens.js "example"), so the placeholder is a query that finds something.
    load("token-search/tokens").then(function (meta) {
      if (meta.example) input.placeholder = "Neurons by token, e.g. " + meta.example;
    }, function () { /* no index: keep the plain placeholder */ });
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
        var ex = entry && entry.e ? entry.e : [];
        var negative = entry && entry.n ? ranked(entry, entry.n, query) : [];  // negative graphs (--polarity both)
        negative.forEach(function (it) { it.anchor = "negative"; });
        if (!entry || (!entry.a.length && !entry.c.length && !ex.length && !negative.length)) {
          panel.appendChild(el("div", "n2g-ts-none", "No neuron graph or mined example has the token \u201c" + query + "\u201d."));
        } else {
          if (entry.a.length) panel.appendChild(resultList("Graph fires on it", ranked(entry, entry.a, query), entry.na, "activation"));
          if (entry.c.length) panel.appendChild(resultList("Graph needs it as context", ranked(entry, entry.c, query), entry.nc, "importance"));
          // Tokens the neuron fires on in its top windows that its graph does not name (search_index.py "e").
          if (ex.length) panel.appendChild(resultList("Fires on it in its examples, not in its graph", ranked(entry, ex, query), entry.ne, "share of max"));
          if (negative.length) panel.appendChild(resultList("Goes negative on it (negative graph)", negative, entry.nn, "\u2212activation"));
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

  /* ---------------------------------------------------------------- pattern search -------- */

  // "fires on X" / "fires on X when Y comes before it" / "Y anywhere in the context" (search.md).
  function patternQuery(fires, before) {
    var x = searchKey(fires || ""), y = searchKey(before || "");
    if (fires && x) {
      return lookup(x).then(function (entry) {
        if (!entry) return { items: [], total: 0, verb: "activation" };
        var rows = entry.a;
        if (before && y) rows = rows.filter(function (r) { return r[4].indexOf(y) !== -1; });
        var items = ranked(entry, rows, fires);
        // Each token lists its strongest neurons only: say so when a "before" filter ran over that list.
        return { items: items, total: before && y ? items.length : entry.na, verb: "activation",
                 scanned: entry.a.length, all: entry.na };
      });
    }
    if (before && y) {
      return lookup(y).then(function (entry) {
        if (!entry) return { items: [], total: 0, verb: "importance" };
        return { items: ranked(entry, entry.c, before), total: entry.nc, verb: "importance" };
      });
    }
    return Promise.resolve(null);
  }

  function setupPatternSearch(form) {
    var out = form.parentNode.querySelector(".n2g-pattern-results");
    var fires = form.elements.fires, before = form.elements.before, triggers = form.elements.triggers;
    var seq = 0;
    function run() {
      var mine = ++seq;
      var params = new URLSearchParams();
      if (fires.value) params.set("fires", fires.value);
      if (before.value) params.set("before", before.value);
      if (triggers.value) params.set("triggers", triggers.value);
      try { history.replaceState(null, "", "?" + params.toString()); } catch (e) { /* some file:// setups refuse it */ }
      patternQuery(fires.value, before.value).then(function (res) {
        if (mine !== seq) return;
        out.replaceChildren();
        if (!res) { out.appendChild(el("p", "n2g-note", "Enter a token it fires on, a token before it, or both.")); return; }
        return Promise.all(res.items.map(function (it) {
          return neuronInfo(it.layer, it.neuron).then(function (info) { it.info = info; return it; });
        })).then(function (items) {
          if (mine !== seq) return;
          var want = triggers.value;
          items = items.filter(function (it) {
            var g = it.info ? it.info[1] : 0;
            return !want || (want === "1" ? g === 1 : g >= 2);
          });
          var what = fires.value && before.value ? "fire on \u201c" + fires.value + "\u201d with \u201c" + before.value + "\u201d before it"
            : fires.value ? "fire on \u201c" + fires.value + "\u201d" : "have \u201c" + before.value + "\u201d in their context";
          if (items.length === 1) what = what.replace(/^fire on/, "fires on").replace(/^have /, "has ");
          out.appendChild(el("p", "n2g-pattern-count", items.length + " neuron" + (items.length === 1 ? "" : "s") + " " + what +
            (want ? " (trigger filter on)" : "") + (res.total > res.items.length ? "; only the strongest " + res.items.length + " of " + res.total + " are indexed" : "") +
            (res.all > res.scanned && before.value && fires.value ? "; searched among the strongest " + res.scanned + " of the " + res.all + " neurons that fire on it" : "")));
          var ol = el("ol", "n2g-pattern-list");
          items.forEach(function (it) {
            var li = el("li");
            var a = neuronLink(it);
            a.appendChild(el("span", "n2g-ts-val", res.verb + " " + it.value.toFixed(2)));
            li.appendChild(a);
            if (it.info && it.info[0]) li.appendChild(el("div", "n2g-ts-sum", summaryText(it.info)));
            ol.appendChild(li);
          });
          out.appendChild(ol);
        });
      }).catch(function (err) {
        if (mine !== seq) return;
        out.replaceChildren(el("p", "n2g-ts-none", "Pattern search is unavailable (" + err.message + ")."));
      });
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); run(); });
    [fires, before].forEach(function (input) {
      input.addEventListener("keydown", function (e) { e.stopPropagation(); });
    });
    triggers.addEventListener("change", run);
    var q = new URLSearchParams(location.search);
    if (q.get("fires") || q.get("before")) {
      fires.value = q.get("fires") || "";
      before.value = q.get("before") || "";
      triggers.value = q.get("triggers") || "";
      run();
    }
  }

  /* ------------------------------------------------------------------ file:// links -------- */

  // The offline bundle opened from disk: a directory link ("neurons/L3/N7/") would show a folder listing,
  // so links get "index.html" appended when followed.
  function fixFileLinks() {
    if (location.protocol !== "file:") return;
    document.addEventListener("click", function (e) {
      var a = e.target.closest ? e.target.closest("a[href]") : null;
      if (!a || a.target || a.hasAttribute("download")) return;
      var url = new URL(a.href, location.href);
      if (url.protocol === "file:" && url.pathname.slice(-1) === "/") {
        url.pathname += "index.html";
        a.href = url.href;
      }
    }, true);
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
    // A column of trigger-group counts (layer tables) adds a polysemanticity filter.
    var heads0 = table.tHead ? Array.prototype.slice.call(table.tHead.rows[0].cells) : [];
    var groupCol = heads0.findIndex(function (th) { return th.hasAttribute("data-groups"); });
    var groupSel = null;
    if (groupCol >= 0) {
      groupSel = el("select", "n2g-groups-filter");
      groupSel.setAttribute("aria-label", "Filter by number of separate triggers");
      [["", "any number of triggers"], ["1", "one trigger"], ["2", "2 or more triggers (polysemantic?)"]].forEach(function (o) {
        var opt = el("option", null, o[1]);
        opt.value = o[0];
        groupSel.appendChild(opt);
      });
      bar.appendChild(groupSel);
    }
    bar.appendChild(count);
    var holder = table.closest(".n2g-table") || table;
    holder.parentNode.insertBefore(bar, holder);
    var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    function update() {
      var q = filter.value.toLowerCase().trim();
      var shown = 0;
      var want = groupSel ? groupSel.value : "";
      rows.forEach(function (r, i) {
        var ok = !q || texts[i].indexOf(q) !== -1;
        if (ok && want) {
          var g = Number(r.cells[groupCol].getAttribute("data-v") || 0);
          ok = want === "1" ? g === 1 : g >= 2;
        }
        r.hidden = !ok;
        if (ok) shown++;
      });
      count.textContent = shown + " of " + rows.length + " rows";
    }
    filter.addEventListener("input", update);
    if (groupSel) groupSel.addEventListener("change", update);
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

  /* ---------------------------------------------------------------- example values ----- */

  // A neuron page's example windows carry their tokens' values as one attribute (render/neuron.py
  // example_html): data-v on the window, one number per <i> token in order. Hovering or tapping a token
  // gives it its value as a title, set on first use.
  function showValue(e) {
    var tok = e.target;
    if (!tok || tok.tagName !== "I" || tok.title) return;
    var box = tok.parentNode;
    if (!box || !box.getAttribute || box.getAttribute("data-v") === null) return;
    var i = Array.prototype.indexOf.call(box.getElementsByTagName("i"), tok);
    var v = box.getAttribute("data-v").split(" ")[i];
    if (v !== undefined) tok.title = v;
  }

  // A phone shows no title: a tap on a token shows its value in a small tip next to it (a tap elsewhere,
  // a scroll or Escape hides it).
  var tip = null;
  function hideTip() { if (tip) tip.hidden = true; }
  function tapValue(e) {
    var tok = e.target;
    if (!tok || tok.tagName !== "I" || !tok.parentNode || !tok.parentNode.getAttribute ||
        tok.parentNode.getAttribute("data-v") === null) { hideTip(); return; }
    showValue(e);
    if (!tok.title) return;
    if (!tip) { tip = el("div", "n2g-tip"); tip.setAttribute("role", "status"); document.body.appendChild(tip); }
    tip.textContent = tok.textContent.trim() + " \u2192 " + tok.title;
    tip.hidden = false;
    var r = tok.getBoundingClientRect();
    var w = tip.offsetWidth;
    tip.style.left = Math.max(4, Math.min(r.left, document.documentElement.clientWidth - w - 4)) + "px";
    tip.style.top = (r.bottom + 4) + "px";
  }

  // Example windows carry ids (t1, h2: render/neuron.py's split and rank); their "#N" becomes a link to
  // that anchor here, not in every page's HTML.
  function linkExamples() {
    Array.prototype.forEach.call(document.querySelectorAll(".n2g-ex[id] > .n2g-ex-head"), function (head) {
      var id = head.parentNode.id;
      var walker = document.createTreeWalker(head, NodeFilter.SHOW_TEXT);
      for (var node = walker.nextNode(); node; node = walker.nextNode()) {
        var at = node.data.indexOf("#");
        if (at < 0) continue;
        var m = /^#\d+/.exec(node.data.slice(at));
        if (!m) continue;
        var rest = node.splitText(at);
        rest.data = rest.data.slice(m[0].length);
        var a = el("a", "n2g-ex-link", m[0]);
        a.href = "#" + id;
        head.insertBefore(a, rest);
        break;
      }
    });
  }

  /* ----------------------------------------------------- jump box, random neuron, 404 -------- */

  // Neurons of this build: tokens.js "layers", {layer: [[first, last], ...]} (render/search_index.py).
  function buildNeurons() {
    return load("token-search/tokens").then(function (meta) { return meta.layers || {}; });
  }
  function inBuild(layers, layer, neuron) {
    return (layers[String(layer)] || []).some(function (r) { return neuron >= r[0] && neuron <= r[1]; });
  }
  function neuronUrl(layer, neuron) { return new URL("neurons/L" + layer + "/N" + neuron + "/", ROOT).href; }
  function randomNeuron(layers) {
    var runs = [], total = 0;
    Object.keys(layers).forEach(function (l) {
      layers[l].forEach(function (r) { runs.push([Number(l), r[0], r[1]]); total += r[1] - r[0] + 1; });
    });
    var k = Math.floor(Math.random() * total);
    for (var i = 0; i < runs.length; i++) {
      var size = runs[i][2] - runs[i][1] + 1;
      if (k < size) return [runs[i][0], runs[i][1] + k];
      k -= size;
    }
    return null;
  }
  // "L12 N3", "12 3", "l12/n3", "12.3": a layer and a neuron.
  function parseJump(text) {
    var m = /^\s*l?\s*(\d+)\s*[\s\/.,:-]\s*n?\s*(\d+)\s*$/i.exec(text || "");
    return m ? [Number(m[1]), Number(m[2])] : null;
  }

  // Every pager (neuron and layer pages) gets a jump box and a random-neuron link. Without JavaScript the
  // pager's layer links remain.
  function setupJump(pager) {
    var form = el("form", "n2g-jump");
    var input = el("input");
    input.type = "text";
    input.placeholder = "L12 N3";
    input.setAttribute("aria-label", "Go to a neuron: layer and neuron, e.g. L12 N3");
    input.size = 7;
    var msg = el("span", "n2g-note");
    var rnd = el("a", "n2g-random", "random neuron");
    rnd.href = new URL("", ROOT).href;
    rnd.addEventListener("click", function (e) {
      e.preventDefault();
      buildNeurons().then(function (layers) {
        var pick = randomNeuron(layers);
        if (pick) location.href = neuronUrl(pick[0], pick[1]);
      });
    });
    form.appendChild(input);
    form.appendChild(rnd);
    form.appendChild(msg);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var at = parseJump(input.value);
      if (!at) { msg.textContent = " type a layer and a neuron, e.g. L12 N3"; return; }
      buildNeurons().then(function (layers) {
        if (inBuild(layers, at[0], at[1])) location.href = neuronUrl(at[0], at[1]);
        else msg.textContent = " L" + at[0] + " N" + at[1] + " is not in this build";
      }, function () { location.href = neuronUrl(at[0], at[1]); });
    });
    input.addEventListener("keydown", function (e) { e.stopPropagation(); });
    var up = pager.querySelector("a[href*='layers/']");  // a neuron page's "↑ Layer": the box goes after it
    pager.insertBefore(form, up ? up.nextSibling : null);
  }

  // The 404 page (templates/overrides/404.html): a neuron URL that this build does not have says so.
  function setup404(box) {
    var m = /\/neurons\/L(\d+)\/N(\d+)(\/|$)/.exec(location.pathname);
    if (!m) return;
    var layer = Number(m[1]), neuron = Number(m[2]);
    buildNeurons().then(function (layers) {
      var p = el("p", "n2g-404-neuron");
      var ids = layers[String(layer)];
      if (inBuild(layers, layer, neuron)) {
        p.textContent = "Layer " + layer + ", neuron " + neuron + " is in this build, but its page is missing: the site may be only partly uploaded.";
      } else {
        p.textContent = "Layer " + layer + ", neuron " + neuron + " is not in this build" +
          (ids ? " (layer " + layer + " has neurons " + ids.map(function (r) { return r[0] === r[1] ? r[0] : r[0] + "\u2013" + r[1]; }).join(", ") + "). " : ": this build has no neuron of layer " + layer + ". ");
        if (ids) {
          var a = el("a", null, "Layer " + layer + "'s table");
          a.href = new URL("layers/L" + layer + "/", ROOT).href;
          p.appendChild(a);
        }
      }
      box.appendChild(p);
    }, function () { /* no index */ });
  }

  // For tests and debugging: the same folding, hash and ranking the box uses.
  window.n2gSearch = { key: searchKey, hash: fnv1a32, ranked: ranked, root: ROOT.href, pattern: patternQuery,
                       jump: parseJump };
  window.n2gLoad = load;
  window.n2gRoot = ROOT;

  function init() {
    document.addEventListener("mouseover", showValue);
    document.addEventListener("touchstart", showValue, { passive: true });
    document.addEventListener("click", tapValue);
    document.addEventListener("keydown", function (e) { if (e.key === "Escape") hideTip(); });
    window.addEventListener("scroll", hideTip, { passive: true });
    Array.prototype.forEach.call(document.querySelectorAll(".n2g-pager"), setupJump);
    linkExamples();
    Array.prototype.forEach.call(document.querySelectorAll(".n2g-404"), setup404);
    fixFileLinks();
    setupSearch();
    Array.prototype.forEach.call(document.querySelectorAll("form.n2g-pattern"), setupPatternSearch);
    Array.prototype.forEach.call(document.querySelectorAll("table.n2g-sortable"), setupTable);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
