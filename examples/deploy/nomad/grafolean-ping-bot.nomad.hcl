# Three replicas of the ping bot sharing one bot token: a Nomad service job.
# Each allocation's shard index is its NOMAD_ALLOC_INDEX (0, 1, 2), given to
# the bot as SHARD; SHARD_COUNT must equal the group's count (to resize, see
# docs/sharding.md). The token is read from the Nomad variable
# nomad/jobs/grafolean-ping-bot (key `token`):
#
#   nomad var put nomad/jobs/grafolean-ping-bot token=@token
#   nomad job run grafolean-ping-bot.nomad.hcl
#
# The image is one that holds the bot's binary at /usr/local/bin (the project
# publishes none: build it from bots/ping).
#
# ICMP: `cap_add = ["net_raw"]` below is refused unless the Nomad client's
# docker plugin allows it (NET_RAW is not in the driver's default
# `allow_caps`):
#
#   plugin "docker" {
#     config {
#       allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid",
#         "kill", "mknod", "net_bind_service", "setfcap", "setgid", "setpcap",
#         "setuid", "sys_chroot", "net_raw"]
#     }
#   }
#
# Or drop the cap_add line: Docker (20.10 and later) sets the container's
# net.ipv4.ping_group_range to every group, so the bot uses unprivileged ICMP
# sockets (all but the `dont_fragment` option work without NET_RAW; see
# bots/ping/README.md).
job "grafolean-ping-bot" {
  type = "service"

  group "bot" {
    count = 3

    update {
      max_parallel = 1
    }

    network {
      port "admin" {
        to = 9742
      }
    }

    service {
      name     = "grafolean-ping-bot"
      provider = "nomad"
      port     = "admin"

      check {
        name     = "live"
        type     = "http"
        path     = "/live"
        interval = "10s"
        timeout  = "2s"
      }

      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "bot" {
      driver       = "docker"
      kill_timeout = "30s"

      config {
        image   = "grafolean-ping-bot:0.1.0"
        command = "/usr/local/bin/grafolean-ping-bot"
        args    = ["--listen", "0.0.0.0:9742", "--log-format", "json"]
        ports   = ["admin"]
        cap_add = ["net_raw"]
      }

      env {
        BACKEND_URL         = "http://grafolean/api"
        BOT_TOKEN_FROM_FILE = "${NOMAD_SECRETS_DIR}/token"
        SHARD               = "${NOMAD_ALLOC_INDEX}"
        SHARD_COUNT         = "3"
      }

      template {
        data        = "{{ with nomadVar \"nomad/jobs/grafolean-ping-bot\" }}{{ .token }}{{ end }}"
        destination = "secrets/token"
        perms       = "400"
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
