// The MQTT.js side of bench/publisher: the same job as `mqtt-presence-sensor --count N`, in one Node process.
// Each client registers a retained "0" will (QoS 1) on PREFIX/<name>, publishes a retained "1" (QoS 1) at every
// connect, republishes it every HEARTBEAT seconds (on MQTT 5 with a message expiry of three beats), and on SIGINT
// publishes a retained "0", waits for its acknowledgement and disconnects. Like the sensor, each client heals its
// status: it subscribes to its own topic (QoS 0; no-local on MQTT 5) and answers anything but "1" there with "1"
// while it runs. SELF_HEAL 0 leaves that out: a peer that does less than the sensor.
// Usage: node fleet.mjs URL PREFIX N HEARTBEAT_SECONDS [MQTT_VERSION: 4 (3.1.1, the default) or 5] [SELF_HEAL: 1 or 0]
import mqtt from 'mqtt'

const [url, prefix, countText, heartbeatText, versionText, selfHealText] = process.argv.slice(2)
const count = Number(countText)
const heartbeat = Number(heartbeatText) * 1000
const version = Number(versionText || 4)
const selfHeal = (selfHealText || '1') !== '0'
if (!url || !prefix || !(count > 0) || ![4, 5].includes(version)) {
  console.error('usage: node fleet.mjs URL PREFIX N HEARTBEAT_SECONDS [4|5] [1|0]')
  process.exit(2)
}

let stopping = false

const clients = []
for (let i = 1; i <= count; i++) {
  const name = 's-' + String(i).padStart(6, '0')
  const topic = `${prefix}/${name}`
  const client = mqtt.connect(url, {
    clientId: `${prefix}-${name}`,
    protocolVersion: version,
    keepalive: 30,
    reconnectPeriod: 1000,
    will: { topic, payload: '0', qos: 1, retain: true }
  })
  // Like the sensor on MQTT 5 with a heartbeat: a retained "1" expires after three missed beats.
  const expiry = version === 5 && heartbeat > 0 ? { properties: { messageExpiryInterval: 3 * heartbeat / 1000 } } : {}
  const announce = () => client.publish(topic, '1', { qos: 1, retain: true, ...expiry })
  client.on('connect', () => {
    if (stopping) return  // a reconnect during the stop must not say "1" after the "0"
    if (selfHeal) client.subscribe(topic, version === 5 ? { qos: 0, nl: true } : { qos: 0 })
    announce()
  })
  if (selfHeal) {
    client.on('message', (_, payload) => {
      if (!stopping && payload.toString() !== '1') announce()
    })
  }
  client.on('error', () => {})
  const beat = heartbeat > 0 ? setInterval(() => { if (client.connected && !stopping) announce() }, heartbeat) : null
  clients.push({ client, topic, beat })
}

// The stop, like the sensor's: no beat after it (a "1" republished after the "0" would stand), then each "0"
// acknowledged before the disconnect.
process.on('SIGINT', async () => {
  stopping = true
  for (const { beat } of clients) if (beat) clearInterval(beat)
  await Promise.all(clients.map(({ client, topic }) => new Promise((resolve) => {
    client.publish(topic, '0', { qos: 1, retain: true }, () => client.end(false, {}, resolve))
  })))
  process.exit(0)
})
