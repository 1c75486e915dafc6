// The console's one way to the central's API: JSON both ways, the session's CSRF token on
// every action, and a network failure answered as status 0 instead of thrown, so that each
// caller says what it does when the central cannot be reached.

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export async function api(path, method = "GET", body = undefined) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    return { status: 0, data: null };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null; // a proxy's HTML error page, an empty answer
  }
  return { status: response.status, data };
}

export const query = (params) =>
  new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null)).toString();
