// Building the page from data: elements with text (never HTML from data), tables and times.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A table with a caption and column headers; `empty` is shown when there are no rows.
export function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
    ),
  );
}

export function section(title, ...children) {
  return h("section", { "aria-label": title }, h("h3", {}, title), ...children);
}

// "12 s ago" with the exact time as a tooltip; "never" for no time.
export function ago(seconds) {
  if (seconds === null || seconds === undefined) return h("span", { class: "muted" }, "never");
  const delta = Math.max(0, Date.now() / 1000 - seconds);
  let text;
  if (delta < 60) text = `${Math.round(delta)} s ago`;
  else if (delta < 3600) text = `${Math.round(delta / 60)} min ago`;
  else if (delta < 86400) text = `${Math.round(delta / 3600)} h ago`;
  else text = `${Math.round(delta / 86400)} d ago`;
  const exact = new Date(seconds * 1000).toISOString();
  return h("time", { datetime: exact, title: exact }, text);
}

export function badge(text, tone) {
  return h("span", { class: `badge ${tone || ""}` }, text);
}

export function labels(map) {
  return h(
    "ul",
    { class: "labels" },
    Object.entries(map || {}).map(([key, value]) => h("li", {}, `${key}=${value}`)),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}
