// Control's API as the console uses it: the operator's token, requests, and errors as messages.

const KEY = "edgeward.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  // One line for the operator: the HTTP status, the API's code and its message.
  describe() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// The JSON answer of `method path`; an ApiError carrying the API's own message otherwise.
export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token.get()}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (first) {
    // A read is asked again once: a keep-alive connection that control closed in the same
    // moment fails the request without control being away. A change is never sent twice.
    if (method !== "GET") {
      throw new ApiError(0, "unreachable", `control cannot be reached: ${first.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "unreachable", `control cannot be reached: ${e.message}`);
    }
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || "http-error",
      error.message || `${response.statusText || "error"} (${text.slice(0, 200)})`,
    );
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const segment = (name) => encodeURIComponent(name);
