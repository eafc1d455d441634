// The console's calls to the Hatchway server: sign-in, the signed-in user, and AWS
// operations run as that user (POST api/call with X-Amz-Target). Every URL is relative to
// the page, so the console works behind a path prefix.

export class ApiError extends Error {
  constructor(status, type, message) {
    super(type ? `${type}: ${message}` : message);
    this.status = status;
    this.type = type;
    this.reason = message;
  }
}

export class Api {
  constructor(base = new URL("./", document.baseURI)) {
    this.base = base;
    this.csrfToken = "";
  }

  url(path) {
    return new URL(path, this.base);
  }

  async request(path, { method = "GET", body, headers = {} } = {}) {
    let response;
    try {
      response = await fetch(this.url(path), {
        method,
        credentials: "same-origin",
        headers: {
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
          ...(method !== "GET" ? { "X-CSRF-Token": this.csrfToken } : {}),
          ...headers,
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (error) {
      throw new ApiError(0, "", `The Hatchway server could not be reached (${error.message}).`);
    }
    const text = await response.text();
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = { message: text.slice(0, 300) };
    }
    if (!response.ok) {
      const type = (data.__type || "").split("#").pop();
      const message = data.message || data.Message || `HTTP ${response.status}`;
      throw new ApiError(response.status, type, message);
    }
    return data;
  }

  async signIn(fields) {
    const me = await this.request("api/sign-in", { method: "POST", body: fields });
    this.csrfToken = me.csrfToken;
    return me;
  }

  async me() {
    const me = await this.request("api/me");
    this.csrfToken = me.csrfToken;
    return me;
  }

  signOut() {
    return this.request("api/sign-out", { method: "POST" });
  }

  nodes() {
    return this.request("api/nodes");
  }

  // One AWS operation, e.g. call("AmazonSSM.StartSession", {Target: "mi-…"}).
  call(target, params = {}) {
    return this.request("api/call", {
      method: "POST",
      body: params,
      headers: { "X-Amz-Target": target },
    });
  }
}
