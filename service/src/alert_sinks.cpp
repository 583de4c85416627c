#include <mqtt_presence/service/alert_sinks.hpp>

#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <regex>
#include <vector>

#include <nlohmann/json.hpp>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>

extern char** environ;

namespace mqtt_presence {
namespace {

// The JSON string escape of `text`, without the quotes.
std::string escaped(const std::string& text) {
    const auto quoted = nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return quoted.substr(1, quoted.size() - 2);
}

struct url_parts {
    std::string origin;  // scheme://host:port
    std::string path;
};

url_parts split_url(const std::string& url) {
    static const std::regex form(R"(^(https?://[^/\s]+)(/[^\s]*)?$)");
    std::smatch m;
    if (!std::regex_match(url, m, form))
        throw error("--alert-webhook " + url + ": give http(s)://HOST[:PORT][/PATH]");
    return {m[1], m[2].matched ? std::string(m[2]) : "/"};
}

}  // namespace

namespace {

struct header {
    std::string name, value;
};

// "Name: value" split; throws for what HTTP would not carry as one header.
header split_header(const std::string& text) {
    const auto colon = text.find(':');
    const auto bad = [&text](const char* why) {
        return error("--alert-header '" + text + "': " + why + " (give 'Name: value', e.g. 'Authorization: Bearer "
                     "$TOKEN')");
    };
    if (colon == std::string::npos || colon == 0) throw bad("no name before a colon");
    header h{text.substr(0, colon), text.substr(colon + 1)};
    for (const unsigned char c : h.name)
        if (!std::isalnum(c) && std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string::npos)
            throw bad("the name is not an HTTP token");
    if (h.value.find_first_of("\r\n") != std::string::npos) throw bad("a line break in the value");
    h.value.erase(0, h.value.find_first_not_of(" \t"));
    return h;
}

}  // namespace

namespace {

// Each placeholder and its text for an alert, JSON-escaped without quotes (times and numbers need none). One table
// for the check at the start and for the filling: only the placeholders a template uses are computed.
struct template_field {
    const char* name;
    std::string (*text)(const alert&);
};

std::string seconds_text(std::chrono::milliseconds d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(d.count()) / 1000.0);
    return buf;
}

const std::vector<template_field>& template_fields() {
    static const std::vector<template_field> fields{
        {"{{alert}}", [](const alert& a) { return escaped(a.kind); }},
        {"{{cause}}", [](const alert& a) { return escaped(a.cause); }},
        {"{{client}}", [](const alert& a) { return escaped(a.client); }},
        {"{{topic}}", [](const alert& a) { return escaped(a.topic); }},
        {"{{scheme}}", [](const alert& a) { return escaped(a.scheme); }},
        {"{{broker}}", [](const alert& a) { return escaped(a.broker); }},
        {"{{time}}", [](const alert& a) { return format_iso8601(a.time); }},
        {"{{since}}", [](const alert& a) { return a.since ? format_iso8601(*a.since) : std::string("unknown"); }},
        {"{{down_for}}",
         [](const alert& a) { return a.down_for ? format_duration(*a.down_for) : std::string("unknown"); }},
        {"{{down_for_s}}", [](const alert& a) { return a.down_for ? seconds_text(*a.down_for) : std::string("null"); }},
        {"{{count}}", [](const alert& a) { return std::to_string(a.count); }},
        {"{{sample}}",
         [](const alert& a) {
             std::string sample;
             for (const auto& s : a.sample) sample += (sample.empty() ? "" : ", ") + s;
             return escaped(sample);
         }},
        {"{{title}}", [](const alert& a) { return escaped(a.title()); }},
        {"{{message}}", [](const alert& a) { return escaped(a.message()); }},
        {"{{url}}", [](const alert& a) { return escaped(a.url); }},
        {"{{json}}", [](const alert& a) { return escaped(a.json()); }},
    };
    return fields;
}

}  // namespace

std::vector<std::string> template_placeholders() {
    std::vector<std::string> names;
    for (const auto& f : template_fields()) names.emplace_back(f.name);
    return names;
}

void alert_sink_options::validate() const {
    if (!webhook.empty()) (void)split_url(webhook);
    for (const auto& [group, url] : group_webhooks) {
        if (group.empty()) throw error("--alert-webhook-for needs GROUP=URL");
        (void)split_url(url);
    }
    if (exec_timeout.count() <= 0) throw error("--alert-exec-timeout must be positive");
    for (const auto& h : headers) (void)split_header(h);
    if (!public_url.empty() && public_url.rfind("http://", 0) != 0 && public_url.rfind("https://", 0) != 0)
        throw error("--public-url " + public_url + ": give http(s)://HOST[:PORT][/PATH]");
    const auto& fields = template_fields();
    for (auto at = template_text.find("{{"); at != std::string::npos; at = template_text.find("{{", at + 2)) {
        const auto end = template_text.find("}}", at);
        const auto name = template_text.substr(at, end == std::string::npos ? std::string::npos : end + 2 - at);
        if (std::any_of(fields.begin(), fields.end(), [&name](const template_field& f) { return name == f.name; }))
            continue;
        std::string list;
        for (const auto& f : fields) list += (list.empty() ? "" : " ") + std::string(f.name);
        throw error("--alert-template: unknown placeholder " + name.substr(0, 40) + " (known: " + list + ")");
    }
}

std::string fill_template(const std::string& text, const alert& a) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        const auto& fields = template_fields();
        const auto field = std::find_if(fields.begin(), fields.end(), [&](const template_field& f) {
            return text.compare(i, std::strlen(f.name), f.name) == 0;
        });
        if (field == fields.end()) {
            out += text[i++];
            continue;
        }
        out += field->text(a);
        i += std::strlen(field->name);
    }
    return out;
}

std::string client_link(const std::string& base, const std::string& client, const std::string& topic) {
    if (base.empty()) return {};
    auto url = base + (base.back() == '/' ? "" : "/");
    if (!client.empty())
        url += "#client=" + httplib::detail::encode_query_param(client) +
               "&topic=" + httplib::detail::encode_query_param(topic);
    return url;
}

alert_sinks::alert_sinks(alert_sink_options options, std::function<void(const std::string&)> warn,
                         std::function<void(const alert&)> delivered)
    : options_(std::move(options)), warn_(std::move(warn)), delivered_callback_(std::move(delivered)) {
    options_.validate();
    for (const auto& h : options_.headers) {
        auto [name, value] = split_header(h);
        headers_.emplace_back(std::move(name), std::move(value));
    }
    thread_ = std::thread([this] { loop(); });
}

alert_sinks::~alert_sinks() noexcept { stop(); }

void alert_sinks::send(alert a) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(a));
    } catch (...) {
        return;
    }
    cv_.notify_one();
}

std::uint64_t alert_sinks::delivered() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return delivered_;
}

void alert_sinks::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
        stop_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

alert_sinks::backlog alert_sinks::pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    backlog b;
    b.count = queue_.size() + (in_flight_ ? 1 : 0);
    b.given_up = given_up_;
    if (in_flight_) b.oldest = in_flight_since_;
    else if (!queue_.empty()) b.oldest = queue_.front().time;
    return b;
}

void alert_sinks::loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        if (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_) {
            // A stop waits about a second for the receiver, then says what it could not deliver.
            given_up_ += queue_.size();
            const auto left = queue_.size();
            const auto first = queue_.front().kind + " " + queue_.front().client;
            queue_.clear();
            lock.unlock();
            if (warn_)
                warn_("stopping: " + std::to_string(left) + " alerts not delivered (first: " + first +
                      "); the next start delivers them");
            return;
        }
        alert a = std::move(queue_.front());
        queue_.pop_front();
        in_flight_ = true;
        in_flight_since_ = a.time;
        lock.unlock();
        deliver(a);
        lock.lock();
        in_flight_ = false;
    }
}

// One alert to each sink; a webhook is retried with a capped back-off until a 2xx or the stop.
void alert_sinks::deliver(const alert& a) noexcept {
    try {
        if (!options_.exec.empty()) run_exec(a);
        // The receivers: the webhook, and each of the alert's groups' own (once each).
        std::vector<std::string> urls;
        if (!options_.webhook.empty()) urls.push_back(options_.webhook);
        for (const auto& [group, url] : options_.group_webhooks) {
            const bool its = group == a.group || std::find(a.groups.begin(), a.groups.end(), group) != a.groups.end();
            if (its && std::find(urls.begin(), urls.end(), url) == urls.end()) urls.push_back(url);
        }
        for (const auto& url : urls)
            if (!post_until_taken(a, url)) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++delivered_;
        }
        if (warn_) warn_("alert delivered: " + a.kind + (a.client.empty() ? "" : " " + a.client));
        if (delivered_callback_) delivered_callback_(a);
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++given_up_;
        if (warn_) warn_(std::string("alert not delivered: ") + e.what());
    }
}

void alert_sinks::run_exec(const alert& a) {
    const auto json = a.json();
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("MQTT_PRESENCE_ALERT=" + a.kind);
    env.push_back("MQTT_PRESENCE_CLIENT=" + a.client);
    env.push_back("MQTT_PRESENCE_TOPIC=" + a.topic);
    env.push_back("MQTT_PRESENCE_TIME=" + format_iso8601(a.time));
    env.push_back("MQTT_PRESENCE_SINCE=" + (a.since ? format_iso8601(*a.since) : std::string()));
    env.push_back("MQTT_PRESENCE_CAUSE=" + a.cause);
    env.push_back("MQTT_PRESENCE_TITLE=" + a.title());
    env.push_back("MQTT_PRESENCE_MESSAGE=" + a.message());
    env.push_back("MQTT_PRESENCE_URL=" + a.url);
    env.push_back("MQTT_PRESENCE_JSON=" + json);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string sh = "/bin/sh", dash_c = "-c", cmd = options_.exec;
    char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};

    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) throw error("alert-exec: no pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    // The command starts with no signal blocked and SIGPIPE at its default, whatever the service's threads block
    // (a tool that takes its signals with sigwait blocks them) or ignore: its own timeout and a `kill` reach it.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    if (rc != 0) {
        close(in[1]);
        throw error("alert-exec: cannot run /bin/sh");
    }
    const std::string body = json + "\n";
    signal(SIGPIPE, SIG_IGN);  // a command that does not read its stdin must not end the service
    (void)!write(in[1], body.data(), body.size());
    close(in[1]);
    const auto deadline = std::chrono::steady_clock::now() + options_.exec_timeout;
    int status = 0;
    for (;;) {
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (std::chrono::steady_clock::now() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (warn_) warn_("alert-exec killed after " + std::to_string(options_.exec_timeout.count()) + " ms");
            return;
        }
        poll(nullptr, 0, 10);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && warn_)
        warn_("alert-exec exited with " + std::to_string(WEXITSTATUS(status)));
}

// Posts until the receiver takes it, 1 s doubling to 60 s apart; false when the service stops first (given up: the
// next start delivers it from the outbox).
bool alert_sinks::post_until_taken(const alert& a, const std::string& webhook) {
    auto wait = std::chrono::seconds(1);
    while (!post(a, webhook)) {
        std::unique_lock<std::mutex> pause(mutex_);
        if (stopping_) {  // one more try was given; a stopping service cannot wait for a receiver
            ++given_up_;
            pause.unlock();
            if (warn_) warn_("stopping: alert " + a.kind + " " + a.client + " not delivered; the next start delivers it");
            return false;
        }
        cv_.wait_for(pause, wait, [this] { return stopping_; });
        wait = std::min<std::chrono::seconds>(wait * 2, std::chrono::seconds(60));
    }
    return true;
}

bool alert_sinks::post(const alert& a, const std::string& webhook) {
    const auto url = split_url(webhook);
    httplib::Client client(url.origin);
    // Short: a hung receiver must not hold a stopping service (the alert is retried while the service runs).
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(2, 0);
    client.set_write_timeout(2, 0);
    client.enable_server_certificate_verification(true);
    if (!options_.ca_file.empty()) client.set_ca_cert_path(options_.ca_file.c_str());
    const auto body = options_.template_text.empty() ? a.json() : fill_template(options_.template_text, a);
    const bool is_json = !body.empty() && body.front() == '{';
    const httplib::Headers headers(headers_.begin(), headers_.end());
    auto res = client.Post(url.path.c_str(), headers, body, is_json ? "application/json" : "text/plain; charset=utf-8");
    if (res && res->status >= 200 && res->status < 300) return true;
    if (warn_)
        warn_("alert webhook " + url.origin + ": " +
              (res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error())) + "; retrying");
    return false;
}

}  // namespace mqtt_presence
