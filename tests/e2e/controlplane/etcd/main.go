// Command etcd starts a single-member etcd 3.6 server from go.etcd.io/etcd/server/v3/embed, for the e2e tier's
// control plane (tests/e2e/controlplane/cluster.py). It takes the etcd flags the tier uses, with etcd's names,
// and runs until SIGINT/SIGTERM.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func urls(flagName, value string) []url.URL {
	var out []url.URL
	for _, raw := range strings.Split(value, ",") {
		u, err := url.Parse(raw)
		if err != nil {
			log.Fatalf("--%s: %v", flagName, err)
		}
		out = append(out, *u)
	}
	return out
}

func main() {
	cfg := embed.NewConfig()
	flag.StringVar(&cfg.Name, "name", "default", "member name")
	flag.StringVar(&cfg.Dir, "data-dir", "default.etcd", "data directory")
	listenClient := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URLs to listen on")
	advertiseClient := flag.String("advertise-client-urls", "http://127.0.0.1:2379", "client URLs to advertise")
	listenPeer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URLs to listen on")
	advertisePeer := flag.String("initial-advertise-peer-urls", "http://127.0.0.1:2380", "peer URLs to advertise")
	flag.StringVar(&cfg.InitialCluster, "initial-cluster", "", "initial cluster configuration")
	flag.StringVar(&cfg.ClusterState, "initial-cluster-state", embed.ClusterStateFlagNew, "new or existing")
	flag.StringVar(&cfg.LogLevel, "log-level", "warn", "debug, info, warn, error, panic or fatal")
	flag.StringVar(&cfg.Logger, "logger", "zap", "zap")
	flag.UintVar(&cfg.TickMs, "heartbeat-interval", 100, "heartbeat interval in ms")
	flag.UintVar(&cfg.ElectionMs, "election-timeout", 1000, "election timeout in ms")
	version := flag.Bool("version", false, "print the etcd version and exit")
	flag.Parse()
	if *version {
		printVersion()
		return
	}
	cfg.ListenClientUrls = urls("listen-client-urls", *listenClient)
	cfg.AdvertiseClientUrls = urls("advertise-client-urls", *advertiseClient)
	cfg.ListenPeerUrls = urls("listen-peer-urls", *listenPeer)
	cfg.AdvertisePeerUrls = urls("initial-advertise-peer-urls", *advertisePeer)
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		server.Server.Stop()
		log.Fatal("etcd: not ready after 60 s")
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	case <-stop:
	}
}
