//! Property tests: for arbitrary objects of every served version, conversion
//! to the other version of the kind and back gives the object back
//! (A → B → A == A, which for both generators also covers B → A → B), also
//! after defaulting; defaulting is idempotent; and conversion output is an
//! object the target version fully understands.

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use emqx_crd::dynamic::{convert_object, default_object, validate_object};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

/// Builds a JSON object from `(key, Option<value>)`, leaving out `None`s.
fn obj(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut map = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            map.insert(k.to_owned(), v);
        }
    }
    Value::Object(map)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 ._/:=-]{0,16}", "\\PC{0,8}", Just(String::new()),]
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn string_map() -> impl Strategy<Value = Value> {
    btree_map("[a-z][a-z0-9./-]{0,10}", text(), 0..3).prop_map(|m| json!(m))
}

fn timestamp() -> impl Strategy<Value = String> {
    (
        2000u32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
}

fn metadata() -> impl Strategy<Value = Value> {
    (
        word(),
        of(word()),
        of(string_map()),
        of(string_map()),
        of(1i64..1000),
        of("[a-f0-9-]{8,12}"),
    )
        .prop_map(|(name, ns, labels, annotations, generation, uid)| {
            obj(vec![
                ("name", Some(json!(name))),
                ("namespace", ns.map(Value::from)),
                ("labels", labels),
                ("annotations", annotations),
                ("generation", generation.map(Value::from)),
                ("uid", uid.map(Value::from)),
            ])
        })
}

fn template_metadata() -> impl Strategy<Value = Value> {
    (of(string_map()), of(string_map())).prop_map(|(labels, annotations)| {
        obj(vec![("labels", labels), ("annotations", annotations)])
    })
}

fn evacuation_strategy() -> impl Strategy<Value = Value> {
    (
        of(0i32..=86_400),
        of(1i32..=1_000_000),
        of(1i32..=1_000_000),
    )
        .prop_map(|(w, c, s)| {
            obj(vec![
                ("waitTakeover", w.map(Value::from)),
                ("connEvictRate", c.map(Value::from)),
                ("sessEvictRate", s.map(Value::from)),
            ])
        })
}

/// v1beta4 has no guard: every part of it travels in the conversion data.
fn guard() -> impl Strategy<Value = Value> {
    (
        of(any::<bool>()),
        of((of(1i32..=100), of(5i32..=3_600))),
        of(of(1i32..=1_000_000)),
    )
        .prop_map(|(enabled, recovery, failures)| {
            obj(vec![
                ("enabled", enabled.map(Value::from)),
                (
                    "connectionRecovery",
                    recovery.map(|(p, w)| {
                        obj(vec![
                            ("minPercent", p.map(Value::from)),
                            ("windowSeconds", w.map(Value::from)),
                        ])
                    }),
                ),
                (
                    "connectFailures",
                    failures.map(|m| obj(vec![("maxPerMinute", m.map(Value::from))])),
                ),
            ])
        })
}

fn update_strategy() -> impl Strategy<Value = Value> {
    (
        of(Just("Recreate")),
        of(0i32..=86_400),
        of(evacuation_strategy()),
        // v1beta4 cannot say `Manual`: it travels in the conversion data.
        of(prop_oneof![Just("Automatic"), Just("Manual")]),
        of(guard()),
    )
        .prop_map(|(t, d, e, p, g)| {
            obj(vec![
                ("type", t.map(Value::from)),
                ("initialDelaySeconds", d.map(Value::from)),
                ("evacuationStrategy", e),
                ("promotion", p.map(Value::from)),
                ("guard", g),
            ])
        })
}

fn pull_policy() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("Always"), Just("Never"), Just("IfNotPresent")]
}

fn container_ports() -> impl Strategy<Value = Value> {
    vec(
        (
            1i32..65_536,
            of(word()),
            of(prop_oneof![Just("TCP"), Just("UDP")]),
        ),
        0..3,
    )
    .prop_map(|ports| {
        json!(
            ports
                .into_iter()
                .map(|(p, n, proto)| obj(vec![
                    ("containerPort", Some(json!(p))),
                    ("name", n.map(Value::from)),
                    ("protocol", proto.map(Value::from)),
                ]))
                .collect::<Vec<_>>()
        )
    })
}

fn env() -> impl Strategy<Value = Value> {
    vec(("[A-Z][A-Z0-9_]{0,8}", of(text())), 0..3).prop_map(|vars| {
        json!(
            vars.into_iter()
                .map(|(n, v)| obj(vec![
                    ("name", Some(json!(n))),
                    ("value", v.map(Value::from))
                ]))
                .collect::<Vec<_>>()
        )
    })
}

fn probe() -> impl Strategy<Value = Value> {
    (
        "/[a-z]{0,6}",
        prop_oneof![
            (1i32..65_536).prop_map(Value::from),
            word().prop_map(Value::from)
        ],
        of(0i32..100),
        of(1i32..100),
    )
        .prop_map(|(path, port, delay, period)| {
            obj(vec![
                ("httpGet", Some(json!({"path": path, "port": port}))),
                ("initialDelaySeconds", delay.map(Value::from)),
                ("periodSeconds", period.map(Value::from)),
            ])
        })
}

fn tolerations() -> impl Strategy<Value = Value> {
    vec(
        (
            word(),
            prop_oneof![Just("Exists"), Just("Equal")],
            of(Just("NoSchedule")),
        ),
        0..2,
    )
    .prop_map(|ts| {
        json!(
            ts.into_iter()
                .map(|(k, op, e)| obj(vec![
                    ("key", Some(json!(k))),
                    ("operator", Some(json!(op))),
                    ("effect", e.map(Value::from)),
                ]))
                .collect::<Vec<_>>()
        )
    })
}

fn resources() -> impl Strategy<Value = Value> {
    (of(prop_oneof![Just("500m"), Just("1"), Just("250m")]), of(prop_oneof![Just("512Mi"), Just("1Gi")]))
        .prop_map(|(cpu, mem)| json!({"limits": obj(vec![("cpu", cpu.map(Value::from)), ("memory", mem.map(Value::from))])}))
}

fn containers() -> impl Strategy<Value = Value> {
    vec((word(), "[a-z]{1,6}:[0-9]\\.[0-9]"), 0..2).prop_map(|cs| {
        json!(
            cs.into_iter()
                .map(|(n, i)| json!({"name": n, "image": i}))
                .collect::<Vec<_>>()
        )
    })
}

fn volumes() -> impl Strategy<Value = Value> {
    vec(word(), 0..2).prop_map(|names| {
        json!(
            names
                .into_iter()
                .map(|n| json!({"name": n, "emptyDir": {}}))
                .collect::<Vec<_>>()
        )
    })
}

fn volume_mounts() -> impl Strategy<Value = Value> {
    vec((word(), "/[a-z]{1,8}"), 0..2).prop_map(|ms| {
        json!(
            ms.into_iter()
                .map(|(n, p)| json!({"name": n, "mountPath": p}))
                .collect::<Vec<_>>()
        )
    })
}

fn pvc_spec() -> impl Strategy<Value = Value> {
    (of(word()), prop_oneof![Just("1Gi"), Just("20Mi")]).prop_map(|(class, size)| {
        obj(vec![
            ("storageClassName", class.map(Value::from)),
            ("accessModes", Some(json!(["ReadWriteOnce"]))),
            ("resources", Some(json!({"requests": {"storage": size}}))),
        ])
    })
}

fn pdb_bound() -> impl Strategy<Value = (Option<Value>, Option<Value>)> {
    prop_oneof![
        Just((None, None)),
        (0i32..5).prop_map(|n| (Some(json!(n)), None)),
        (0u32..=100).prop_map(|p| (None, Some(json!(format!("{p}%"))))),
    ]
}

/// v2 pod settings (core adds `volumeClaimTemplates`).
fn pod_spec(core: bool) -> impl Strategy<Value = Value> {
    let a = (
        of(0i32..10),
        of(vec(text(), 0..3)),
        of(vec(text(), 0..3)),
        of(container_ports()),
        of(env()),
        of(resources()),
        of(string_map()),
        of(word()),
        of(tolerations()),
        of(tolerations()),
    );
    let b = (
        pdb_bound(),
        of(Just(json!({"nodeAffinity": {}}))),
        of((0i64..2000).prop_map(|u| json!({"runAsUser": u}))),
        of(Just(json!({"runAsNonRoot": true}))),
        of(containers()),
        of(containers()),
        of(volumes()),
        of(volume_mounts()),
        of(probe()),
        of(probe()),
        of(probe()),
        of(pvc_spec()),
    );
    (a, b).prop_map(move |(a, b)| {
        let (replicas, command, args, ports, env, resources, node_selector, node_name, tol, tole) =
            a;
        let ((min, max), affinity, psc, csc, init, extra, vols, mounts, live, ready, startup, pvc) =
            b;
        obj(vec![
            ("replicas", replicas.map(Value::from)),
            ("command", command.map(|c| json!(c))),
            ("args", args.map(|c| json!(c))),
            ("ports", ports),
            ("env", env),
            ("resources", resources),
            ("nodeSelector", node_selector),
            ("nodeName", node_name.map(Value::from)),
            ("tolerations", tol),
            ("toleRations", tole),
            ("minAvailable", min),
            ("maxUnavailable", max),
            ("affinity", affinity),
            ("podSecurityContext", psc),
            ("containerSecurityContext", csc),
            ("initContainers", init),
            ("extraContainers", extra),
            ("extraVolumes", vols),
            ("extraVolumeMounts", mounts),
            ("livenessProbe", live),
            ("readinessProbe", ready),
            ("startupProbe", startup),
            ("volumeClaimTemplates", if core { pvc } else { None }),
        ])
    })
}

fn pod_template(core: bool) -> impl Strategy<Value = Value> {
    (of(template_metadata()), of(pod_spec(core)))
        .prop_map(|(m, s)| obj(vec![("metadata", m), ("spec", s)]))
}

fn service_spec() -> impl Strategy<Value = Value> {
    (
        of(prop_oneof![
            Just("ClusterIP"),
            Just("NodePort"),
            Just("LoadBalancer")
        ]),
        vec(
            (
                word(),
                1i32..65_536,
                of(30_000i32..32_768),
                of(1i32..65_536),
            ),
            0..3,
        ),
    )
        .prop_map(|(t, ports)| {
            obj(vec![
                ("type", t.map(Value::from)),
                (
                    "ports",
                    Some(json!(
                        ports
                            .into_iter()
                            .map(|(n, p, np, tp)| obj(vec![
                                ("name", Some(json!(n))),
                                ("port", Some(json!(p))),
                                ("nodePort", np.map(Value::from)),
                                ("targetPort", tp.map(Value::from)),
                            ]))
                            .collect::<Vec<_>>()
                    )),
                ),
            ])
        })
}

fn service_template_v2beta1() -> impl Strategy<Value = Value> {
    (
        of(any::<bool>()),
        of(template_metadata()),
        of(service_spec()),
    )
        .prop_map(|(e, m, s)| {
            obj(vec![
                ("enabled", e.map(Value::from)),
                ("metadata", m),
                ("spec", s),
            ])
        })
}

fn service_v2alpha2() -> impl Strategy<Value = Value> {
    (
        of(Just("v1")),
        of(Just("Service")),
        of(template_metadata()),
        of(service_spec()),
        of(Just(json!({"loadBalancer": {}}))),
    )
        .prop_map(|(a, k, m, s, st)| {
            obj(vec![
                ("apiVersion", a.map(Value::from)),
                ("kind", k.map(Value::from)),
                ("metadata", m),
                ("spec", s),
                ("status", st),
            ])
        })
}

fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..3, 0u32..20).prop_map(|(m, p)| format!("emqx/emqx-enterprise:5.{m}.{p}")),
        (0u32..30).prop_map(|p| format!("docker.io/emqx/emqx-ee:4.4.{p}")),
        Just("localhost:5000/emqx:6.0.1".to_owned()),
        Just("emqx:5.1".to_owned()),
        text(),
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_]{1,10}"
}

fn key_ref() -> impl Strategy<Value = Value> {
    (word(), key_name()).prop_map(|(n, k)| json!({"secretName": n, "secretKey": k}))
}

fn bootstrap_keys_v2beta1() -> impl Strategy<Value = Value> {
    vec(
        prop_oneof![
            (key_name(), "[a-z0-9]{3,20}").prop_map(|(k, s)| json!({"key": k, "secret": s})),
            (key_ref(), key_ref()).prop_map(|(k, s)| json!({"secretRef": {"key": k, "secret": s}})),
            of(key_name()).prop_map(|k| obj(vec![("key", k.map(Value::from))])),
        ],
        0..3,
    )
    .prop_map(Value::from)
}

fn bootstrap_keys_inline() -> impl Strategy<Value = Value> {
    vec((key_name(), "[a-z0-9]{3,20}"), 0..3).prop_map(|keys| {
        json!(
            keys.into_iter()
                .map(|(k, s)| json!({"key": k, "secret": s}))
                .collect::<Vec<_>>()
        )
    })
}

fn config_data() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        btree_map("[a-z][a-z.]{0,10}", text(), 0..3).prop_map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} = {}", json!(v)))
                .collect::<Vec<_>>()
                .join("\n")
        }),
    ]
}

fn condition_v2() -> impl Strategy<Value = Value> {
    (
        word(),
        prop_oneof![Just("True"), Just("False"), Just("Unknown")],
        "[A-Z][a-zA-Z]{0,10}",
        text(),
        timestamp(),
        of(0i64..100),
    )
        .prop_map(|(t, s, r, m, ts, g)| {
            obj(vec![
                ("type", Some(json!(t))),
                ("status", Some(json!(s))),
                ("reason", Some(json!(r))),
                ("message", Some(json!(m))),
                ("lastTransitionTime", Some(json!(ts))),
                ("observedGeneration", g.map(Value::from)),
            ])
        })
}

fn evacuation_status() -> impl Strategy<Value = Value> {
    (
        of(text()),
        of((
            of(0i32..1000),
            of(0i32..1000),
            of(0i32..1000),
            of(0i32..1000),
        )),
        of(prop_oneof![
            Just("evicting_conns"),
            Just("waiting_takeover"),
            Just("prohibiting")
        ]),
        of(vec(text(), 0..3)),
        (of(0i32..100), of(1i32..1000), of(0i32..100), of(1i32..1000)),
    )
        .prop_map(|(node, stats, state, recipients, (sg, ser, cg, cer))| {
            obj(vec![
                ("node", node.map(Value::from)),
                (
                    "stats",
                    stats.map(|(a, b, c, d)| {
                        obj(vec![
                            ("initial_sessions", a.map(Value::from)),
                            ("initial_connected", b.map(Value::from)),
                            ("current_sessions", c.map(Value::from)),
                            ("current_connected", d.map(Value::from)),
                        ])
                    }),
                ),
                ("state", state.map(Value::from)),
                ("session_recipients", recipients.map(|r| json!(r))),
                ("session_goal", sg.map(Value::from)),
                ("session_eviction_rate", ser.map(Value::from)),
                ("connection_goal", cg.map(Value::from)),
                ("connection_eviction_rate", cer.map(Value::from)),
            ])
        })
}

fn nodes_status() -> impl Strategy<Value = Value> {
    (
        of(0i32..10),
        of(0i32..10),
        of("[a-f0-9]{10}"),
        of(0i32..10),
        of("[a-f0-9]{10}"),
        of(0i32..10),
        of(0i32..3),
    )
        .prop_map(|(r, rr, cr, crs, ur, urs, cc)| {
            obj(vec![
                ("replicas", r.map(Value::from)),
                ("readyReplicas", rr.map(Value::from)),
                ("currentRevision", cr.map(Value::from)),
                ("currentReplicas", crs.map(Value::from)),
                ("updateRevision", ur.map(Value::from)),
                ("updateReplicas", urs.map(Value::from)),
                ("collisionCount", cc.map(Value::from)),
            ])
        })
}

fn node(uptime: bool) -> impl Strategy<Value = Value> {
    (
        of(text()),
        of(prop_oneof![Just("running"), Just("stopped")]),
        of(Just("core")),
        of(0i64..100_000),
        of(0i64..100_000),
        of(0i64..1_000_000),
        of("[a-f0-9-]{8}"),
    )
        .prop_map(move |(n, s, role, c, l, up, uid)| {
            obj(vec![
                ("node", n.map(Value::from)),
                ("node_status", s.map(Value::from)),
                ("role", role.map(Value::from)),
                ("connections", c.map(Value::from)),
                ("live_connections", l.map(Value::from)),
                ("uptime", if uptime { up.map(Value::from) } else { None }),
                ("podUID", uid.map(Value::from)),
            ])
        })
}

fn status_v2(alpha: bool) -> impl Strategy<Value = Value> {
    (
        of(vec(condition_v2(), 0..3)),
        of(vec(node(alpha), 0..3)),
        of(nodes_status()),
        of(vec(node(alpha), 0..2)),
        of(nodes_status()),
        of(vec(evacuation_status(), 0..2)),
    )
        .prop_map(move |(c, cn, cns, rn, rns, ev)| {
            obj(vec![
                ("conditions", c.map(Value::from)),
                ("coreNodes", cn.map(Value::from)),
                ("coreNodesStatus", cns),
                ("replicantNodes", rn.map(Value::from)),
                ("replicantNodesStatus", rns),
                (
                    if alpha {
                        "nodEvacuationsStatus"
                    } else {
                        "nodeEvacuationsStatus"
                    },
                    ev.map(Value::from),
                ),
            ])
        })
}

fn emqx_v2beta1(kind: &'static str) -> impl Strategy<Value = Value> {
    let a = (
        metadata(),
        image(),
        of(pull_policy()),
        of(vec(word(), 0..2)),
        of(word()),
        of(bootstrap_keys_v2beta1()),
        of((
            of(prop_oneof![Just("Merge"), Just("Replace")]),
            of(config_data()),
        )),
        of(prop_oneof![Just("cluster.local".to_owned()), word()]),
        of(0i32..=100),
    );
    let b = (
        of(update_strategy()),
        of(pod_template(true)),
        of(pod_template(false)),
        of(service_template_v2beta1()),
        of(service_template_v2beta1()),
        of(status_v2(false)),
    );
    (a, b).prop_map(move |(a, b)| {
        let (metadata, image, pp, secrets, sa, keys, config, domain, history) = a;
        let (us, core, repl, dash, listeners, status) = b;
        let spec = obj(vec![
            ("image", Some(json!(image))),
            ("imagePullPolicy", pp.map(Value::from)),
            (
                "imagePullSecrets",
                secrets.map(|s| {
                    json!(
                        s.into_iter()
                            .map(|n| json!({"name": n}))
                            .collect::<Vec<_>>()
                    )
                }),
            ),
            ("serviceAccountName", sa.map(Value::from)),
            ("bootstrapAPIKeys", keys),
            (
                "config",
                config.map(|(m, d)| {
                    obj(vec![
                        ("mode", m.map(Value::from)),
                        ("data", d.map(Value::from)),
                    ])
                }),
            ),
            ("clusterDomain", domain.map(Value::from)),
            ("revisionHistoryLimit", history.map(Value::from)),
            ("updateStrategy", us),
            ("coreTemplate", core),
            ("replicantTemplate", repl),
            ("dashboardServiceTemplate", dash),
            ("listenersServiceTemplate", listeners),
        ]);
        obj(vec![
            ("apiVersion", Some(json!("apps.emqx.io/v2beta1"))),
            ("kind", Some(json!(kind))),
            ("metadata", Some(metadata)),
            ("spec", Some(spec)),
            ("status", status),
        ])
    })
}

fn emqx_v2alpha2() -> impl Strategy<Value = Value> {
    let a = (
        metadata(),
        image(),
        of(pull_policy()),
        of(word()),
        of(bootstrap_keys_inline()),
        of((
            of(prop_oneof![Just("merge"), Just("replace")]),
            of(config_data()),
        )),
        of(word()),
    );
    let b = (
        of(update_strategy()),
        of(pod_template(true)),
        of(pod_template(false)),
        of(service_v2alpha2()),
        of(service_v2alpha2()),
        of(status_v2(true)),
    );
    (a, b).prop_map(|(a, b)| {
        let (metadata, image, pp, sa, keys, config, domain) = a;
        let (us, core, repl, dash, listeners, status) = b;
        let spec = obj(vec![
            ("image", Some(json!(image))),
            ("imagePullPolicy", pp.map(Value::from)),
            ("serviceAccountName", sa.map(Value::from)),
            ("bootstrapAPIKeys", keys),
            (
                "config",
                config.map(|(m, d)| {
                    obj(vec![
                        ("mode", m.map(Value::from)),
                        ("data", d.map(Value::from)),
                    ])
                }),
            ),
            ("clusterDomain", domain.map(Value::from)),
            ("updateStrategy", us),
            ("coreTemplate", core),
            ("replicantTemplate", repl),
            ("dashboardServiceTemplate", dash),
            ("listenersServiceTemplate", listeners),
        ]);
        obj(vec![
            ("apiVersion", Some(json!("apps.emqx.io/v2alpha2"))),
            ("kind", Some(json!("EMQX"))),
            ("metadata", Some(metadata)),
            ("spec", Some(spec)),
            ("status", status),
        ])
    })
}

fn emqx_image_v1beta4() -> impl Strategy<Value = Value> {
    (
        of(prop_oneof![
            Just("docker.io"),
            Just(""),
            Just("registry:5000")
        ]),
        of(prop_oneof![Just("emqx/emqx-ee"), Just("emqx-ee"), Just("")]),
        prop_oneof![(0u32..30).prop_map(|p| format!("4.4.{p}")), text()],
        of(prop_oneof![Just("v"), Just("")]),
        of(prop_oneof![Just("-alpine"), Just("")]),
        of(pull_policy()),
    )
        .prop_map(|(r, repo, v, pre, suf, pp)| {
            obj(vec![
                ("registry", r.map(Value::from)),
                ("repository", repo.map(Value::from)),
                ("version", Some(json!(v))),
                ("prefix", pre.map(Value::from)),
                ("suffix", suf.map(Value::from)),
                ("pullPolicy", pp.map(Value::from)),
            ])
        })
}

fn emqx_container() -> impl Strategy<Value = Value> {
    let a = (
        of(word()),
        emqx_image_v1beta4(),
        of(vec(text(), 0..2)),
        of(vec(text(), 0..2)),
        of(text()),
        of(container_ports()),
        of(env()),
        of(resources()),
        of(volume_mounts()),
    );
    let b = (
        of(probe()),
        of(probe()),
        of(Just(json!({"runAsUser": 1000}))),
        of(btree_map("[a-z][a-z.]{0,10}", text(), 0..3).prop_map(|m| json!(m))),
        of(vec(text(), 0..2)),
        of(bootstrap_keys_inline()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(Just("FallbackToLogsOnError")),
    );
    (a, b).prop_map(|(a, b)| {
        let (name, image, command, args, wd, ports, env, resources, mounts) = a;
        let (live, ready, sc, config, acl, keys, stdin, tty, tmp) = b;
        obj(vec![
            ("name", name.map(Value::from)),
            ("image", Some(image)),
            ("command", command.map(|c| json!(c))),
            ("args", args.map(|c| json!(c))),
            ("workingDir", wd.map(Value::from)),
            ("ports", ports),
            ("env", env),
            ("resources", resources),
            ("volumeMounts", mounts),
            ("livenessProbe", live),
            ("readinessProbe", ready),
            ("securityContext", sc),
            ("emqxConfig", config),
            ("emqxACL", acl.map(|a| json!(a))),
            ("bootstrapAPIKeys", keys),
            ("stdin", stdin.map(Value::from)),
            ("tty", tty.map(Value::from)),
            ("terminationMessagePolicy", tmp.map(Value::from)),
        ])
    })
}

fn condition_v1beta4() -> impl Strategy<Value = Value> {
    (
        word(),
        prop_oneof![Just("True"), Just("False")],
        of(timestamp()),
        of(timestamp()),
        of("[A-Z][a-zA-Z]{0,10}"),
        of(text()),
        of(0i64..100),
    )
        .prop_map(|(t, s, u, tr, r, m, g)| {
            obj(vec![
                ("type", Some(json!(t))),
                ("status", Some(json!(s))),
                ("lastUpdateTime", u.map(Value::from)),
                ("lastTransitionTime", tr.map(Value::from)),
                ("reason", r.map(Value::from)),
                ("message", m.map(Value::from)),
                ("observedGeneration", g.map(Value::from)),
            ])
        })
}

fn status_v1beta4() -> impl Strategy<Value = Value> {
    (
        of(vec(condition_v1beta4(), 0..3)),
        of(vec(
            (
                of(text()),
                of(Just("Running")),
                of(Just("4.4.14")),
                of(0i64..10_000),
            ),
            0..3,
        )),
        of(0i32..10),
        of(0i32..10),
        of("[a-f0-9]{10}"),
        of((
            of(word()),
            of(word()),
            of(timestamp()),
            of(vec(evacuation_status(), 0..2)),
        )),
        (
            of(vec(node(false), 0..2)),
            of(nodes_status()),
            of(vec(node(false), 0..2)),
            of(nodes_status()),
        ),
    )
        .prop_map(|(c, nodes, r, rr, v, bg, (cn, cns, rn, rns))| {
            obj(vec![
                ("conditions", c.map(Value::from)),
                (
                    "emqxNodes",
                    nodes.map(|ns| {
                        json!(
                            ns.into_iter()
                                .map(|(n, s, v, c)| obj(vec![
                                    ("node", n.map(Value::from)),
                                    ("node_status", s.map(Value::from)),
                                    ("version", v.map(Value::from)),
                                    ("connections", c.map(Value::from)),
                                ]))
                                .collect::<Vec<_>>()
                        )
                    }),
                ),
                ("replicas", r.map(Value::from)),
                ("readyReplicas", rr.map(Value::from)),
                ("currentStatefulSetVersion", v.map(Value::from)),
                (
                    "blueGreenUpdateStatus",
                    bg.map(|(o, c, t, e)| {
                        obj(vec![
                            ("originStatefulSet", o.map(Value::from)),
                            ("currentStatefulSet", c.map(Value::from)),
                            ("startedAt", t.map(Value::from)),
                            ("evacuationsStatus", e.map(Value::from)),
                        ])
                    }),
                ),
                ("coreNodes", cn.map(Value::from)),
                ("coreNodesStatus", cns),
                ("replicantNodes", rn.map(Value::from)),
                ("replicantNodesStatus", rns),
            ])
        })
}

fn emqx_enterprise_v1beta4() -> impl Strategy<Value = Value> {
    let a = (
        metadata(),
        of(0i32..10),
        of(prop_oneof![Just("cluster.local".to_owned()), word()]),
        of((of(Just("TElDRU5TRQ==")), of(text()), of(word()))),
        of((of(template_metadata()), pvc_spec())),
        of((of(0i32..=86_400), of(evacuation_strategy()))),
    );
    let b = (
        of(template_metadata()),
        of(word()),
        of(text()),
        of(emqx_container()),
        of(containers()),
        of(containers()),
        of(containers()),
        of(volumes()),
        of(Just(json!({"fsGroup": 1000}))),
        of(string_map()),
        of(tolerations()),
        of((of(template_metadata()), of(service_spec()))),
    );
    let c = (
        of(status_v1beta4()),
        of(Just(json!({"podAffinity": {}}))),
        of(word()),
    );
    (a, b, c).prop_map(|(a, b, c)| {
        let (metadata, replicas, domain, license, persistent, bg) = a;
        let (tm, sa, reloader, container, extra, init, eph, vols, psc, ns, tol, svc) = b;
        let (status, affinity, node_name) = c;
        let pod = obj(vec![
            ("serviceAccountName", sa.map(Value::from)),
            ("reloaderImage", reloader.map(Value::from)),
            ("emqxContainer", container),
            ("extraContainers", extra),
            ("initContainers", init),
            ("ephemeralContainers", eph),
            ("volumes", vols),
            ("podSecurityContext", psc),
            ("nodeSelector", ns),
            ("nodeName", node_name.map(Value::from)),
            ("affinity", affinity),
            ("tolerations", tol),
        ]);
        let spec = obj(vec![
            ("replicas", replicas.map(Value::from)),
            ("clusterDomain", domain.map(Value::from)),
            (
                "license",
                license.map(|(d, s, n)| {
                    obj(vec![
                        ("data", d.map(Value::from)),
                        ("stringData", s.map(Value::from)),
                        ("secretName", n.map(Value::from)),
                    ])
                }),
            ),
            (
                "persistent",
                persistent.map(|(m, s)| obj(vec![("metadata", m), ("spec", Some(s))])),
            ),
            (
                "blueGreenUpdate",
                bg.map(|(d, e)| {
                    obj(vec![
                        ("initialDelaySeconds", d.map(Value::from)),
                        ("evacuationStrategy", e),
                    ])
                }),
            ),
            (
                "template",
                Some(obj(vec![("metadata", tm), ("spec", Some(pod))])),
            ),
            (
                "serviceTemplate",
                svc.map(|(m, s)| obj(vec![("metadata", m), ("spec", s)])),
            ),
        ]);
        obj(vec![
            ("apiVersion", Some(json!("apps.emqx.io/v1beta4"))),
            ("kind", Some(json!("EmqxEnterprise"))),
            ("metadata", Some(metadata)),
            ("spec", Some(spec)),
            ("status", status),
        ])
    })
}

fn any_object() -> impl Strategy<Value = (Value, &'static str)> {
    prop_oneof![
        emqx_v2beta1("EMQX").prop_map(|o| (o, "apps.emqx.io/v2alpha2")),
        emqx_v2alpha2().prop_map(|o| (o, "apps.emqx.io/v2beta1")),
        emqx_enterprise_v1beta4().prop_map(|o| (o, "apps.emqx.io/v2beta1")),
        emqx_v2beta1("EmqxEnterprise").prop_map(|o| (o, "apps.emqx.io/v1beta4")),
    ]
}

fn round_trip(original: &Value, other: &str) -> Result<(), TestCaseError> {
    let api_version = original["apiVersion"].as_str().unwrap().to_owned();
    let converted =
        convert_object(original, other).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(converted["apiVersion"].as_str(), Some(other));
    prop_assert_eq!(&converted["kind"], &original["kind"]);
    // Whatever the conversion produced, the target version understands all of it.
    let verdict =
        validate_object(&converted, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let unknown: Vec<_> = verdict
        .errors
        .iter()
        .filter(|e| e.message.starts_with("unknown field"))
        .collect();
    prop_assert!(
        unknown.is_empty(),
        "converted object has fields its version drops: {:?}",
        unknown
    );
    let back =
        convert_object(&converted, &api_version).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, original);
    Ok(())
}

/// Runs a property over `any_object()` on a thread with a large stack: the
/// generators are deeply nested types whose debug-build frames overflow the
/// default 2 MiB test thread.
fn check(property: fn(Value, &'static str) -> Result<(), TestCaseError>) {
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(ProptestConfig {
                cases: 256,
                ..ProptestConfig::default()
            });
            runner.run(&any_object(), |(object, other)| property(object, other))
        })
        .expect("spawn");
    if let Err(e) = worker.join().expect("property thread") {
        panic!("{e}");
    }
}

#[test]
fn generated_objects_are_fully_understood() {
    check(|object, _| {
        let verdict =
            validate_object(&object, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let unknown: Vec<_> = verdict
            .errors
            .iter()
            .filter(|e| e.message.starts_with("unknown field"))
            .collect();
        prop_assert!(
            unknown.is_empty(),
            "generator produced fields the model drops: {:?}",
            unknown
        );
        Ok(())
    });
}

#[test]
fn conversion_round_trips() {
    check(|object, other| round_trip(&object, other));
}

#[test]
fn conversion_round_trips_after_defaulting() {
    check(|object, other| {
        let defaulted = default_object(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
        round_trip(&defaulted, other)
    });
}

#[test]
fn defaulting_is_idempotent() {
    check(|object, _| {
        let once = default_object(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let twice = default_object(&once).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(once, twice);
        Ok(())
    });
}

#[test]
fn converting_twice_in_a_row_round_trips() {
    // A → B → A → B: the second B equals the first.
    check(|object, other| {
        let b1 = convert_object(&object, other).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let a = convert_object(&b1, object["apiVersion"].as_str().unwrap())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b2 = convert_object(&a, other).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(b1, b2);
        Ok(())
    });
}

#[test]
fn an_edit_made_through_the_other_version_survives_the_way_back() {
    // A user changes the image through v2beta1 of a v1beta4 object: the new
    // image wins over the stashed registry/repository parts.
    check(|object, other| {
        if object["apiVersion"] != "apps.emqx.io/v1beta4" {
            return Ok(());
        }
        let mut b =
            convert_object(&object, other).map_err(|e| TestCaseError::fail(e.to_string()))?;
        b["spec"]["image"] = json!("quay.io/acme/emqx-ee:4.4.19");
        let a = convert_object(&b, "apps.emqx.io/v1beta4")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let image = &a["spec"]["template"]["spec"]["emqxContainer"]["image"];
        prop_assert_eq!(&image["registry"], &json!("quay.io"));
        prop_assert_eq!(&image["repository"], &json!("acme/emqx-ee"));
        prop_assert_eq!(&image["version"], &json!("4.4.19"));
        Ok(())
    });
}

#[test]
fn manual_promotion_survives_a_trip_through_v1beta4() {
    // v1beta4 has no promotion field: `Manual` travels in the conversion
    // data, and the default `Automatic` needs no entry at all.
    let object = |promotion: &str| {
        json!({
            "apiVersion": "apps.emqx.io/v2beta1",
            "kind": "EmqxEnterprise",
            "metadata": {"name": "ee", "namespace": "default"},
            "spec": {
                "image": "emqx/emqx-ee:4.4.19",
                // As defaulting leaves it: the guard's defaults convert back
                // by themselves (see the next test).
                "updateStrategy": {"type": "Recreate", "initialDelaySeconds": 5, "promotion": promotion, "guard": {
                    "enabled": true,
                    "connectionRecovery": {"minPercent": 80, "windowSeconds": 60},
                    "connectFailures": {"maxPerMinute": 60}
                }}
            }
        })
    };
    let manual = object("Manual");
    let stored = convert_object(&manual, "apps.emqx.io/v1beta4").expect("to v1beta4");
    assert!(stored["spec"]["blueGreenUpdate"].get("promotion").is_none());
    let stash = stored["metadata"]["annotations"]["apps.emqx.io/conversion-data"]
        .as_str()
        .expect("conversion data");
    assert!(stash.contains("/spec/updateStrategy/promotion"), "{stash}");
    let back = convert_object(&stored, "apps.emqx.io/v2beta1").expect("to v2beta1");
    assert_eq!(back, manual);

    let automatic = object("Automatic");
    let stored = convert_object(&automatic, "apps.emqx.io/v1beta4").expect("to v1beta4");
    assert!(
        stored["metadata"].get("annotations").is_none(),
        "{}",
        stored["metadata"]
    );
    let back = convert_object(&stored, "apps.emqx.io/v2beta1").expect("to v2beta1");
    assert_eq!(back, automatic);
}

#[test]
fn a_changed_guard_survives_a_trip_through_v1beta4() {
    // v1beta4 has no guard: a changed one travels in the conversion data,
    // the defaulted one needs no entry at all.
    let object = |guard: Value| {
        json!({
            "apiVersion": "apps.emqx.io/v2beta1",
            "kind": "EmqxEnterprise",
            "metadata": {"name": "ee", "namespace": "default"},
            "spec": {
                "image": "emqx/emqx-ee:4.4.19",
                "updateStrategy": {"type": "Recreate", "initialDelaySeconds": 5, "promotion": "Automatic", "guard": guard}
            }
        })
    };
    let changed = object(json!({
        "enabled": false,
        "connectionRecovery": {"minPercent": 95, "windowSeconds": 30},
        "connectFailures": {"maxPerMinute": 7}
    }));
    let stored = convert_object(&changed, "apps.emqx.io/v1beta4").expect("to v1beta4");
    assert!(stored["spec"]["blueGreenUpdate"].get("guard").is_none());
    let stash = stored["metadata"]["annotations"]["apps.emqx.io/conversion-data"]
        .as_str()
        .expect("conversion data");
    assert!(stash.contains("/spec/updateStrategy/guard"), "{stash}");
    let back = convert_object(&stored, "apps.emqx.io/v2beta1").expect("to v2beta1");
    assert_eq!(back, changed);

    let defaulted = object(json!({
        "enabled": true,
        "connectionRecovery": {"minPercent": 80, "windowSeconds": 60},
        "connectFailures": {"maxPerMinute": 60}
    }));
    let stored = convert_object(&defaulted, "apps.emqx.io/v1beta4").expect("to v1beta4");
    assert!(
        stored["metadata"].get("annotations").is_none(),
        "{}",
        stored["metadata"]
    );
    let back = convert_object(&stored, "apps.emqx.io/v2beta1").expect("to v2beta1");
    assert_eq!(back, defaulted);
}
