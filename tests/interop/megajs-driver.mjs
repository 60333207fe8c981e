// Drives megajs (the npm MEGA client) against mega-testserver for the interop test in
// tests/interop_megajs.rs. Configuration comes from the environment (never argv, so the
// password does not show in `ps`): MEGA_API_URL, MEGA_EMAIL, MEGA_PASSWORD, DRIVER_MODE.
// Prints one JSON object on stdout.
import { Storage, File } from 'megajs'
import crypto from 'node:crypto'

const { MEGA_API_URL: gateway, MEGA_EMAIL: email, MEGA_PASSWORD: password } = process.env
const mode = process.env.DRIVER_MODE || 'full'

// Same generator as interop_content() in the Rust test.
function content (size, seed) {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = ((Math.imul(i, 0x9E3779B1) + seed) >>> 24) & 0xff
  return b
}
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex')

async function main () {
  const storage = await new Storage({ email, password, gateway, keepalive: false }).ready
  const out = { user: storage.user, name: storage.name, listing: [], downloads: {}, uploads: {} }
  for (const f of storage.root.children || []) {
    out.listing.push({ name: f.name, size: f.size || 0, directory: f.directory })
  }
  if (mode === 'list') return out

  // Download and MAC-verify (megajs verifies whole-file downloads) what the Rust client uploaded.
  for (const f of storage.root.children || []) {
    if (!f.directory && f.name.startsWith('from-rust-')) {
      out.downloads[f.name] = sha256(await f.downloadBuffer())
    }
  }
  // Upload files for the Rust client to read, including sizes where megajs' condensed MAC
  // differs from the SDK's (0 and 131072, a chunk boundary).
  for (const size of [0, 16, 131072, 200000, 1048581]) {
    const name = `from-js-${size}.bin`
    const file = await storage.upload({ name, size }, content(size, size % 251)).complete
    out.uploads[name] = { size: file.size || 0, handle: file.nodeId }
  }
  const dir = await storage.mkdir('js-folder')
  await dir.upload({ name: 'inner.txt', size: 5 }, Buffer.from('inner')).complete
  const renameMe = storage.root.children.find(f => f.name === 'from-js-16.bin')
  await renameMe.rename('from-js-16-renamed.bin')
  await renameMe.moveTo(dir)
  // A public link made by megajs, for the Rust client to download.
  const linked = storage.root.children.find(f => f.name === 'from-js-200000.bin')
  out.link = await linked.link()
  // And megajs reading a public link back through the link parser.
  const viaLink = File.fromURL(out.link, { api: storage.api })
  await viaLink.loadAttributes()
  out.link_name = viaLink.name
  out.link_sha256 = sha256(await viaLink.downloadBuffer())
  await storage.close()
  return out
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out) + '\n') },
  (err) => { process.stderr.write(`megajs driver failed: ${err && err.stack || err}\n`); process.exit(1) }
)
