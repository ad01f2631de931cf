// supabase-js, unmodified, through the flows apps use right after sign-up, against a
// running `apitask-auth serve --dev` (started by tests/acceptance/test_supabase_js.py).
//
// Usage: node supabase_flows.mjs STEP...
//   (steps: signup signin claims anonymous totp phone_signup phone_otp phone_change phone_mfa)
// Environment: AUTH_URL (the service's base URL), ANON_KEY (the project's anon key,
// an HS256 JWT with the service's secret).
//
// Output: one JSON object per line, {"step": NAME, "ok": true, ...facts} per step
// passed, or {"step": NAME, "ok": false, "error": ...} and exit status 1 at the
// first step that failed, so the pytest side can name the step.
//
// In a Supabase project the client talks to <project>/auth/v1/... and the API
// gateway strips /auth/v1 before GoTrue sees the request; the fetch given to
// createClient does the same (and notes every request, so the claims step can
// tell whether getClaims asked the JWKS endpoint or fell back to GET /user).
// Mail and texts are read back from the service's dev inbox, long-polling.

import { createClient } from '@supabase/supabase-js'
import * as OTPAuth from 'otpauth'
import ws from 'ws'

const AUTH_URL = required('AUTH_URL').replace(/\/$/, '')
const ANON_KEY = required('ANON_KEY')
const PASSWORD = 'correct-horse-9'
const MAIL_WAIT_SECONDS = 20

function required(name) {
  const value = process.env[name]
  if (!value) {
    emit({ step: 'setup', ok: false, error: `${name} is not set` })
    process.exit(2)
  }
  return value
}

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n')
}

class StepFailed extends Error {}

function check(condition, message, details) {
  if (!condition) {
    throw new StepFailed(details === undefined ? message : `${message}: ${JSON.stringify(details)}`)
  }
}

/** The data of a supabase-js answer, or the step fails with its error. */
function ok({ data, error }, what) {
  if (error) {
    throw new StepFailed(`${what}: ${error.name} ${error.status ?? ''} ${error.code ?? ''} ${error.message}`)
  }
  return data
}

/** Every request the clients made: [method, path without the gateway prefix]. */
const requests = []

async function gatewayFetch(input, init) {
  const url = new URL(input instanceof Request ? input.url : String(input))
  const prefix = '/auth/v1'
  if (url.pathname.startsWith(prefix)) {
    url.pathname = url.pathname.slice(prefix.length) || '/'
  }
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase()
  requests.push([method, url.pathname])
  return fetch(url, input instanceof Request ? new Request(input, init) : init)
}

function newClient() {
  return createClient(AUTH_URL, ANON_KEY, {
    global: { fetch: gatewayFetch },
    // Node 20 has no WebSocket of its own; supabase-js asks for `ws` there (never
    // used here: no realtime channel is opened).
    realtime: { transport: ws },
    // No browser storage in Node: the client's default keeps the session in memory.
    auth: { autoRefreshToken: false, persistSession: false, detectSessionInUrl: false },
  })
}

function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}@example.com`
}

/** The code in the newest of `count` mails to `address` ("...: 123456" at a line's end). */
async function mailedCode(address, count = 1) {
  const query = new URLSearchParams({ to: address, wait: String(MAIL_WAIT_SECONDS), count: String(count) })
  const response = await fetch(`${AUTH_URL}/_dev/inbox/messages?${query}`)
  check(response.ok, `dev inbox answered ${response.status}`)
  const messages = await response.json()
  check(messages.length >= count, `${messages.length} mail(s) to ${address}, not ${count}`)
  const found = /: (\d{6,10})\s*$/m.exec(messages[0].text)
  check(found !== null, 'no code in the mail', messages[0].text)
  return { code: found[1], subject: messages[0].subject }
}

function uniquePhone() {
  return `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`
}

/** The code in the newest of `count` texts to `phone` ("Your code is 123456"). */
async function textedCode(phone, count = 1) {
  const query = new URLSearchParams({ to: phone, wait: String(MAIL_WAIT_SECONDS), count: String(count) })
  const response = await fetch(`${AUTH_URL}/_dev/inbox/texts?${query}`)
  check(response.ok, `dev inbox answered ${response.status}`)
  const texts = await response.json()
  check(texts.length === count, `${texts.length} text(s) to ${phone}, not ${count}`, texts)
  const found = /^Your code is (\d{6,10})$/.exec(texts[0].text)
  check(found !== null, 'no code in the text', texts[0].text)
  return found[1]
}

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
}

function jwtParts(token) {
  const [header, payload] = token.split('.')
  return { header: decodePart(header), payload: decodePart(payload) }
}

// State shared by the steps, in the order they run.
const state = { email: unique('js'), userId: null, client: null, phone: uniquePhone(), phoneUserId: null, phoneClient: null }

const steps = {
  /** signUp with autoconfirm off mails a code; verifyOtp with it gives a session. */
  async signup() {
    const client = newClient()
    const signedUp = ok(await client.auth.signUp({ email: state.email, password: PASSWORD }), 'signUp')
    check(signedUp.user?.email === state.email, 'signUp returned another user', signedUp.user)
    check(signedUp.session === null, 'signUp gave a session before confirmation')
    check(!signedUp.user.email_confirmed_at, 'the address is confirmed before the mail')
    const mail = await mailedCode(state.email)
    const verified = ok(
      await client.auth.verifyOtp({ email: state.email, token: mail.code, type: 'signup' }),
      'verifyOtp',
    )
    check(verified.session?.user?.id === signedUp.user.id, 'verifyOtp gave no session for the user')
    check(Boolean(verified.user.email_confirmed_at), 'the address is not confirmed after verifyOtp')
    state.userId = signedUp.user.id
    return { user_id: state.userId, mail_subject: mail.subject }
  },

  /** signInWithPassword: a session signed by the configured asymmetric key. */
  async signin() {
    const client = newClient()
    const signedIn = ok(
      await client.auth.signInWithPassword({ email: state.email, password: PASSWORD }),
      'signInWithPassword',
    )
    check(signedIn.user.id === state.userId, 'signed in as another user')
    const { header, payload } = jwtParts(signedIn.session.access_token)
    check(payload.sub === state.userId, 'the token is for another user', payload)
    state.client = client
    return { alg: header.alg, kid: header.kid, aal: payload.aal }
  },

  /** getClaims verifies the token itself with the key from /.well-known/jwks.json
   * (no GET /user), and rejects a token whose payload was changed. */
  async claims() {
    const client = state.client
    const before = requests.length
    const claims = ok(await client.auth.getClaims(), 'getClaims')
    const asked = requests.slice(before).map(([method, path]) => `${method} ${path}`)
    check(claims.claims.sub === state.userId, 'getClaims returned another subject', claims.claims)
    check(asked.includes('GET /.well-known/jwks.json'), 'getClaims did not fetch the JWKS', asked)
    check(!asked.includes('GET /user'), 'getClaims fell back to GET /user', asked)

    const { data: session } = await client.auth.getSession()
    const [head, , signature] = session.session.access_token.split('.')
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...claims.claims, role: 'service_role' }),
    ).toString('base64url')
    const forged = await client.auth.getClaims(`${head}.${forgedPayload}.${signature}`)
    check(forged.error !== null, 'getClaims accepted a forged token')
    return {
      requests: asked,
      alg: claims.header.alg,
      kid: claims.header.kid,
      forged_error: forged.error.name,
    }
  },

  /** signInAnonymously, then updateUser with an address (mail, verifyOtp) and a
   * password: the same user, no longer anonymous, signs in with the password. */
  async anonymous() {
    const client = newClient()
    const anon = ok(await client.auth.signInAnonymously(), 'signInAnonymously')
    check(anon.user?.is_anonymous === true, 'the user is not anonymous', anon.user)
    check(jwtParts(anon.session.access_token).payload.is_anonymous === true, 'the JWT is not anonymous')
    const email = unique('js-anon')
    const updated = ok(await client.auth.updateUser({ email }), 'updateUser(email)')
    check(updated.user.new_email === email, 'updateUser did not set new_email', updated.user)
    const mail = await mailedCode(email)
    const verified = ok(
      await client.auth.verifyOtp({ email, token: mail.code, type: 'email_change' }),
      'verifyOtp(email_change)',
    )
    check(verified.user.id === anon.user.id, 'the conversion made another user')
    check(verified.user.email === email && verified.user.is_anonymous === false, 'not converted', verified.user)
    check(jwtParts(verified.session.access_token).payload.is_anonymous === false, 'the JWT is still anonymous')
    ok(await client.auth.updateUser({ password: PASSWORD }), 'updateUser(password)')
    const again = ok(
      await newClient().auth.signInWithPassword({ email, password: PASSWORD }),
      'signInWithPassword after conversion',
    )
    check(again.user.id === anon.user.id, 'the password signs in another user')
    return { user_id: anon.user.id, mail_subject: mail.subject }
  },

  /** mfa.enroll a TOTP factor, challenge it, verify with a code computed from its
   * secret: the session is raised to aal2 and the factor is verified. */
  async totp() {
    const client = state.client
    const enrolled = ok(
      await client.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'js authenticator' }),
      'mfa.enroll',
    )
    check(enrolled.type === 'totp', 'enrolled another factor type', enrolled)
    check(enrolled.totp.uri.startsWith('otpauth://totp/'), 'no otpauth URI', enrolled.totp)
    check(enrolled.totp.qr_code.startsWith('data:image/svg+xml'), 'no SVG QR code', enrolled.totp.qr_code.slice(0, 40))
    const totp = OTPAuth.URI.parse(enrolled.totp.uri)
    check(totp.secret.base32 === enrolled.totp.secret, 'the URI and the secret differ')
    const challenge = ok(await client.auth.mfa.challenge({ factorId: enrolled.id }), 'mfa.challenge')
    const verified = ok(
      await client.auth.mfa.verify({ factorId: enrolled.id, challengeId: challenge.id, code: totp.generate() }),
      'mfa.verify',
    )
    const { payload } = jwtParts(verified.access_token)
    check(payload.aal === 'aal2', 'the session is not aal2', payload)
    const level = ok(await client.auth.mfa.getAuthenticatorAssuranceLevel(), 'getAuthenticatorAssuranceLevel')
    check(level.currentLevel === 'aal2', 'the client does not see aal2', level)
    const factors = ok(await client.auth.mfa.listFactors(), 'mfa.listFactors')
    const listed = factors.totp.find((factor) => factor.id === enrolled.id)
    check(listed?.status === 'verified', 'the factor is not verified', factors)
    return { factor_id: enrolled.id, aal: payload.aal, amr: payload.amr.map((entry) => entry.method) }
  },

  /** signUp with a phone and a password texts a code; resend({type: 'sms'}) texts a
   * new one; verifyOtp({type: 'sms'}) with it confirms the phone and gives a session;
   * the phone and the password then sign in. */
  async phone_signup() {
    const client = newClient()
    const phone = state.phone
    const stored = phone.slice(1)
    const signedUp = ok(await client.auth.signUp({ phone, password: PASSWORD }), 'signUp(phone)')
    check(signedUp.user?.phone === stored, 'signUp returned another user', signedUp.user)
    check(signedUp.session === null, 'signUp gave a session before the code')
    const first = await textedCode(phone, 1)
    ok(await client.auth.resend({ type: 'sms', phone }), 'resend(sms)')
    const code = await textedCode(phone, 2)
    check(code !== first, 'resend texted the same code again')
    const verified = ok(await client.auth.verifyOtp({ phone, token: code, type: 'sms' }), 'verifyOtp(sms)')
    check(verified.session?.user?.id === signedUp.user.id, 'verifyOtp gave no session for the user')
    check(Boolean(verified.user.phone_confirmed_at), 'the phone is not confirmed after verifyOtp')
    const again = ok(
      await newClient().auth.signInWithPassword({ phone, password: PASSWORD }),
      'signInWithPassword(phone)',
    )
    check(again.user.id === signedUp.user.id, 'the password signs in another user')
    state.phoneUserId = signedUp.user.id
    return { user_id: state.phoneUserId, phone: stored }
  },

  /** signInWithOtp({phone}) texts a code; verifyOtp({type: 'sms'}) signs in with it. */
  async phone_otp() {
    const client = newClient()
    const phone = state.phone
    const sent = ok(await client.auth.signInWithOtp({ phone }), 'signInWithOtp(phone)')
    check(sent.user === null && sent.session === null, 'signInWithOtp answered a user or session', sent)
    const code = await textedCode(phone, 3)
    const signedIn = ok(await client.auth.verifyOtp({ phone, token: code, type: 'sms' }), 'verifyOtp(sms)')
    check(signedIn.user.id === state.phoneUserId, 'the code signed in another user')
    const { payload } = jwtParts(signedIn.session.access_token)
    state.phoneClient = client
    return { user_id: signedIn.user.id, amr: payload.amr.map((entry) => entry.method) }
  },

  /** updateUser({phone}) texts the new number; verifyOtp({type: 'phone_change'})
   * moves the user to it. */
  async phone_change() {
    const client = state.phoneClient
    const phone = uniquePhone()
    const updated = ok(await client.auth.updateUser({ phone }), 'updateUser(phone)')
    check(updated.user.new_phone === phone.slice(1), 'updateUser did not set new_phone', updated.user)
    const code = await textedCode(phone, 1)
    const changed = ok(
      await client.auth.verifyOtp({ phone, token: code, type: 'phone_change' }),
      'verifyOtp(phone_change)',
    )
    check(changed.user.phone === phone.slice(1), 'the phone did not change', changed.user)
    const { data: current } = await client.auth.getUser()
    check(current.user?.phone === phone.slice(1), 'GET /user shows another phone', current.user)
    return { user_id: changed.user.id, phone: changed.user.phone }
  },

  /** mfa.enroll a phone factor, challenge it (a texted code), verify with the code:
   * the session is raised to aal2 with mfa/phone first in its amr. */
  async phone_mfa() {
    const client = state.phoneClient
    const phone = uniquePhone()
    const enrolled = ok(await client.auth.mfa.enroll({ factorType: 'phone', phone }), 'mfa.enroll(phone)')
    check(enrolled.type === 'phone', 'enrolled another factor type', enrolled)
    const challenge = ok(await client.auth.mfa.challenge({ factorId: enrolled.id, channel: 'sms' }), 'mfa.challenge')
    const code = await textedCode(phone, 1)
    const verified = ok(
      await client.auth.mfa.verify({ factorId: enrolled.id, challengeId: challenge.id, code }),
      'mfa.verify',
    )
    const { payload } = jwtParts(verified.access_token)
    check(payload.aal === 'aal2', 'the session is not aal2', payload)
    const factors = ok(await client.auth.mfa.listFactors(), 'mfa.listFactors')
    const listed = factors.phone.find((factor) => factor.id === enrolled.id)
    check(listed?.status === 'verified', 'the factor is not verified', factors)
    return { factor_id: enrolled.id, aal: payload.aal, amr: payload.amr.map((entry) => entry.method) }
  },
}

const wanted = process.argv.slice(2)
for (const name of wanted) {
  if (!(name in steps)) {
    emit({ step: name, ok: false, error: `no such step (known: ${Object.keys(steps).join(' ')})` })
    process.exit(2)
  }
}
for (const name of wanted) {
  try {
    emit({ step: name, ok: true, ...(await steps[name]()) })
  } catch (error) {
    const message = error instanceof StepFailed ? error.message : (error?.stack ?? String(error))
    emit({ step: name, ok: false, error: message })
    process.exit(1)
  }
}
